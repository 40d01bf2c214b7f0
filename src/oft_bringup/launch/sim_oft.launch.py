"""The simulated closed loop: MuJoCo ALOHA + policy node + executor node, all on sim time.

    ros2 launch oft_bringup sim_oft.launch.py checkpoint:=DIR instruction:=TEXT [task:=transfer_cube] [device:=cpu]

The same nodes and parameter files as aloha_oft.launch.py (which this includes
with use_sim:=true); the executor talks to the simulator through the
ros2_control command topics, which the simulator always follows.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

ALOHA_OFT_LAUNCH = os.path.join(get_package_share_directory("oft_bringup"), "launch", "aloha_oft.launch.py")


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", description="checkpoint directory (weights, config, normalization stats)"),
        DeclareLaunchArgument("task", default_value="transfer_cube", description="transfer_cube or insertion"),
        DeclareLaunchArgument("instruction", description="task instruction, e.g. 'transfer the cube'"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device of the policy"),
        DeclareLaunchArgument("control_rate", default_value="50.0", description="executor control rate in Hz"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(ALOHA_OFT_LAUNCH),
            launch_arguments={
                "checkpoint": LaunchConfiguration("checkpoint"),
                "task": LaunchConfiguration("task"),
                "instruction": LaunchConfiguration("instruction"),
                "device": LaunchConfiguration("device"),
                "control_rate": LaunchConfiguration("control_rate"),
                "use_sim": "true",
                "backend": "ros2_control",
            }.items(),
        ),
    ])
