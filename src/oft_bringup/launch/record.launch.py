"""Record a teleoperated ALOHA episode: exactly the topics fit_normalizer and export read.

    ros2 launch oft_bringup record.launch.py output:=bags/episode_000 [use_rosbag2:=true|false] [use_sim_time:=false]

Topics: the three cameras, the follower arms' joint states (observation.state)
and the leader arms' joint states (the teleoperation action), by the suite's
shared names. Storage mcap.

- With rosbag2 installed (`ros2 bag`), it runs `ros2 bag record`, with the
  camera QoS override of config/record_qos_overrides.yaml.
- Without it (e.g. ROS 2 from PyPI wheels), it runs the suite's `record`
  console script (oft_training), which writes the same standard rosbag2 files
  with the `rosbags` library and always subscribes best effort, so the camera
  override is built in.
A bag from either opens in the other's reader. Stop recording with Ctrl-C.
"""

import importlib.util
import os
import shutil

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.substitutions import ExecutableInPackage
from oft_policy.names import CAMERA_TOPICS, FOLLOWER_JOINT_STATE_TOPICS, LEADER_JOINT_STATE_TOPICS

RECORDED_TOPICS = [*CAMERA_TOPICS, *FOLLOWER_JOINT_STATE_TOPICS, *LEADER_JOINT_STATE_TOPICS]
QOS_OVERRIDES = os.path.join(get_package_share_directory("oft_bringup"), "config", "record_qos_overrides.yaml")
HAVE_ROSBAG2 = shutil.which("ros2") is not None and importlib.util.find_spec("rosbag2_py") is not None


ROSBAG2_RECORD = ["ros2", "bag", "record", "-s", "mcap", "--qos-profile-overrides-path", QOS_OVERRIDES]
SUITE_RECORD = [ExecutableInPackage(package="oft_training", executable="record"), "--storage", "mcap"]


def _when(use_rosbag2: bool, use_sim_time: bool):
    """True for one combination of the two boolean launch arguments."""
    return IfCondition(PythonExpression([
        "'", LaunchConfiguration("use_rosbag2"), f"'.lower() == '{str(use_rosbag2).lower()}' and '",
        LaunchConfiguration("use_sim_time"), f"'.lower() == '{str(use_sim_time).lower()}'",
    ]))


def _recorders(output):
    """Both recorders, each with and without sim-time stamps; exactly one runs."""
    actions = []
    for use_sim_time in (False, True):
        sim_flag = ["--use-sim-time"] if use_sim_time else []
        actions.append(ExecuteProcess(
            cmd=ROSBAG2_RECORD + sim_flag + ["-o", output] + RECORDED_TOPICS,
            output="screen", condition=_when(True, use_sim_time),
        ))
        # An ExecuteProcess, not a Node: `record` takes its own flags, not --ros-args.
        actions.append(ExecuteProcess(
            cmd=SUITE_RECORD + sim_flag + ["--out", output],
            output="screen", condition=_when(False, use_sim_time),
        ))
    return actions


def generate_launch_description():
    output = LaunchConfiguration("output")
    return LaunchDescription([
        DeclareLaunchArgument("output", description="bag directory to create (must not exist)"),
        DeclareLaunchArgument(
            "use_rosbag2",
            default_value="true" if HAVE_ROSBAG2 else "false",
            description="record with `ros2 bag record` (default when rosbag2 is installed) or the suite's `record`",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="stamp messages with /clock time (recording the simulator)",
        ),
    ] + _recorders(output))
