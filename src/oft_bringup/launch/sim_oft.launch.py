"""The simulated closed loop: MuJoCo ALOHA + policy node + executor node, all on sim time.

    ros2 launch oft_bringup sim_oft.launch.py checkpoint:=DIR instruction:=TEXT [task:=transfer_cube] [device:=cpu]

aloha_oft.launch.py with use_sim:=true: the same nodes and parameter files
(oft_bringup.system). `bringup sim_oft ...` starts the same without `launch`.
"""

from oft_bringup.launch_file import launch_description


def generate_launch_description():
    return launch_description("sim_oft")
