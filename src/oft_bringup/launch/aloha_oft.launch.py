"""The OFT runtime on bimanual ALOHA: policy node + executor node (+ simulator or robot driver).

    ros2 launch oft_bringup aloha_oft.launch.py checkpoint:=DIR instruction:=TEXT [device:=cuda]
        [control_rate:=50] [calibration:=aloha2] [camera_topic_pattern:=/{camera}/camera/color/image_rect_raw]
        [use_sim:=false] [driver_launch:=FILE] [camera_launch:=FILE] [run_policy:=true] [run_executor:=true]

`bringup aloha_oft ...` starts the same without `launch` installed; both read
the description in oft_bringup.system (`ros2 launch -s` or
`bringup aloha_oft --show-args` list the arguments).

- The policy node is a lifecycle node: it is configured (loads the checkpoint),
  then activated only once configuring succeeded. A failed configure ends the
  launch with a message saying so (the node's own log says why).
- use_sim:=true starts the MuJoCo simulator instead of the driver/camera launch
  files, and every node runs on the simulator's /clock.
- run_policy / run_executor split the two sides over machines or containers
  (docker/compose.yaml runs one side per container).
"""

from oft_bringup.launch_file import launch_description


def generate_launch_description():
    return launch_description("aloha_oft")
