"""Record a teleoperated ALOHA episode: exactly the topics fit_normalizer and export read.

    ros2 launch oft_bringup record.launch.py output:=bags/episode_000 [use_rosbag2:=true|false]
        [use_sim_time:=false] [camera_topic_pattern:=/{camera}/camera/color/image_rect_raw]

Topics: the three cameras (by camera_topic_pattern), the follower arms' joint
states (observation.state) and the leader arms' joint states (the
teleoperation action), by the suite's shared names. Storage mcap.

- With rosbag2 installed (`ros2 bag`), it runs `ros2 bag record`, with the
  camera QoS of config/record_qos_overrides.yaml (a file made for the pattern
  when it is not the default).
- Without it (e.g. ROS 2 from PyPI wheels), it runs the suite's `record`
  console script (oft_training), which writes the same standard rosbag2 files
  with the `rosbags` library and always subscribes best effort.
A bag from either opens in the other's reader. Stop recording with Ctrl-C.
`bringup record output:=...` starts the same without `launch` (oft_bringup.system).
"""

from oft_bringup.launch_file import launch_description


def generate_launch_description():
    return launch_description("record")
