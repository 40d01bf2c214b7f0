"""The simulated closed loop: MuJoCo ALOHA + policy node + executor node, all on sim time.

    ros2 launch oft_bringup sim_oft.launch.py checkpoint:=DIR [task:=transfer_cube] [instruction:=TEXT]

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
        DeclareLaunchArgument("instruction", default_value="", description="task instruction; empty: the checkpoint's default"),
        DeclareLaunchArgument("control_rate", default_value="50.0", description="executor control rate in Hz"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(ALOHA_OFT_LAUNCH),
            launch_arguments={
                "checkpoint": LaunchConfiguration("checkpoint"),
                "task": LaunchConfiguration("task"),
                "instruction": LaunchConfiguration("instruction"),
                "control_rate": LaunchConfiguration("control_rate"),
                "use_sim": "true",
                "backend": "ros2_control",
            }.items(),
        ),
    ])
