"""The OFT runtime on bimanual ALOHA: policy node + executor node (+ simulator or robot driver).

    ros2 launch oft_bringup aloha_oft.launch.py checkpoint:=DIR instruction:=TEXT [device:=cuda]
        [backend:=interbotix|ros2_control] [control_rate:=50] [use_sim:=false]
        [driver_launch:=FILE] [camera_launch:=FILE] [cam_high_topic:=/...] ...
        [run_policy:=true] [run_executor:=true]

- The policy node is a lifecycle node: it is configured (loads the checkpoint),
  then activated only once configuring succeeded. A failed configure ends the
  launch with a message saying so (the node's own log says why).
- use_sim:=true starts the MuJoCo simulator instead of the driver/camera launch
  files, and every node runs on the simulator's /clock.
- run_policy / run_executor split the two sides over machines or containers
  (docker/compose.yaml runs one side per container).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    GroupAction,
    IncludeLaunchDescription,
    LogInfo,
    RegisterEventHandler,
)
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessStart
from launch.events import Shutdown, matches_action
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition
from oft_policy.names import CAMERA_NAMES, camera_topic
from oft_policy.normalization import STATS_FILENAME

CONFIG_DIR = os.path.join(get_package_share_directory("oft_bringup"), "config")


def _declare_arguments():
    return [
        DeclareLaunchArgument("checkpoint", description="checkpoint directory (weights, config, normalization stats)"),
        DeclareLaunchArgument("instruction", default_value="", description="task instruction (the policy node refuses to configure without one)"),
        DeclareLaunchArgument("device", default_value="cuda", description="torch device of the policy: cuda, cuda:1, cpu"),
        DeclareLaunchArgument("backend", default_value="interbotix", description="arm command interface: interbotix or ros2_control"),
        DeclareLaunchArgument("control_rate", default_value="50.0", description="executor control rate in Hz"),
        DeclareLaunchArgument("use_sim", default_value="false", description="true: MuJoCo simulator and sim time instead of the robot"),
        DeclareLaunchArgument("task", default_value="transfer_cube", description="simulator task (use_sim:=true): transfer_cube or insertion"),
        DeclareLaunchArgument("run_policy", default_value="true", description="start the policy node (GPU side)"),
        DeclareLaunchArgument("run_executor", default_value="true", description="start the executor node (robot side)"),
        DeclareLaunchArgument("driver_launch", default_value="", description="launch file of the arms' driver (e.g. the ALOHA bringup); empty: none"),
        DeclareLaunchArgument("camera_launch", default_value="", description="launch file of the cameras; empty: none"),
        DeclareLaunchArgument("policy_params", default_value=os.path.join(CONFIG_DIR, "policy_node.yaml"), description="policy node parameter file"),
        DeclareLaunchArgument("executor_params", default_value=os.path.join(CONFIG_DIR, "executor_node.yaml"), description="executor node parameter file"),
        DeclareLaunchArgument("sim_params", default_value=os.path.join(CONFIG_DIR, "aloha_sim.yaml"), description="simulator parameter file"),
    ] + [
        DeclareLaunchArgument(
            f"{camera}_topic", default_value=camera_topic(camera), description=f"image topic the {camera} camera publishes on"
        )
        for camera in CAMERA_NAMES
    ]


def _text(substitution):
    """A string parameter value, never YAML-typed by launch_ros."""
    return ParameterValue(substitution, value_type=str)


def _optional_include(argument, use_sim):
    """Include the launch file named by `argument`, unless it is empty or the simulator stands in."""
    path = LaunchConfiguration(argument)
    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path),
        condition=IfCondition(PythonExpression(["'", path, "' != '' and '", use_sim, "'.lower() != 'true'"])),
    )


def _drive_lifecycle(policy):
    """configure once the process runs; activate once configured; a failed configure shuts the launch down."""
    def change_state(transition):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(policy), transition_id=transition))

    configure_failed = [
        LogInfo(msg="policy_node failed to configure (see its log above: missing or unreadable checkpoint?); shutting down"),
        EmitEvent(event=Shutdown(reason="policy_node configure failed")),
    ]
    return [
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=policy, start_state="configuring", goal_state="inactive",
            entities=[LogInfo(msg="policy_node configured; activating"), change_state(Transition.TRANSITION_ACTIVATE)],
        )),
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=policy, start_state="configuring", goal_state="unconfigured", entities=configure_failed,
        )),
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=policy, start_state="configuring", goal_state="errorprocessing", entities=configure_failed,
        )),
        RegisterEventHandler(OnProcessStart(target_action=policy, on_start=[change_state(Transition.TRANSITION_CONFIGURE)])),
    ]


def generate_launch_description():
    checkpoint = LaunchConfiguration("checkpoint")
    use_sim = LaunchConfiguration("use_sim")
    run_policy = LaunchConfiguration("run_policy")

    policy = LifecycleNode(
        package="oft_policy",
        executable="policy_node",
        name="policy_node",
        namespace="",
        output="screen",
        condition=IfCondition(run_policy),
        parameters=[
            LaunchConfiguration("policy_params"),
            {
                # Text stays text (an instruction like "yes" or "1" would otherwise be YAML-typed).
                "checkpoint_path": _text(checkpoint),
                "instruction": _text(LaunchConfiguration("instruction")),
                "device": _text(LaunchConfiguration("device")),
                "use_sim_time": use_sim,
            },
        ],
        remappings=[(camera_topic(camera), LaunchConfiguration(f"{camera}_topic")) for camera in CAMERA_NAMES],
    )
    executor = Node(
        package="oft_policy",
        executable="executor_node",
        name="executor_node",
        output="screen",
        condition=IfCondition(LaunchConfiguration("run_executor")),
        parameters=[
            LaunchConfiguration("executor_params"),
            {
                "backend": _text(LaunchConfiguration("backend")),
                # float(): control_rate:=50 must still reach a double parameter as 50.0.
                "control_rate_hz": PythonExpression(["float(", LaunchConfiguration("control_rate"), ")"]),
                "stats_path": _text(PathJoinSubstitution([checkpoint, STATS_FILENAME])),
                "use_sim_time": use_sim,
            },
        ],
    )
    simulator = Node(
        package="oft_sim",
        executable="aloha_sim",
        name="aloha_sim",
        output="screen",
        condition=IfCondition(use_sim),
        parameters=[LaunchConfiguration("sim_params"), {"task": LaunchConfiguration("task")}],
    )
    robot = GroupAction([_optional_include("driver_launch", use_sim), _optional_include("camera_launch", use_sim)])

    return LaunchDescription(
        _declare_arguments()
        + [simulator, robot, executor, policy]
        + [GroupAction(_drive_lifecycle(policy), scoped=False, condition=IfCondition(run_policy))]
    )
