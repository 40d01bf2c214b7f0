"""A system description (oft_bringup.system) as launch / launch_ros actions.

Every launch file of oft_bringup is `launch_description("<its name>")`: one
DeclareLaunchArgument per described argument, and an OpaqueFunction that, at
launch time, reads their values, takes the description's plan for them and
returns its actions. A lifecycle node is configured when its process starts
and activated once configuring succeeded; a failed configure shuts the launch
down. `launch` is imported inside the functions, so this module loads where
it is absent (as `bringup` does).
"""

from __future__ import annotations

import tempfile

from oft_bringup.starting import node_action_kwargs, process_action_kwargs, write_files
from oft_bringup.system import CONFIGURE_FAILED, Argument, Include, NodeSpec, Process, System, plan, system


def launch_description(name: str):
    from launch import LaunchDescription
    from launch.actions import OpaqueFunction

    described = system(name)
    declared = [declare(argument) for argument in described.arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=start, args=[described])])


def declare(argument: Argument):
    from launch.actions import DeclareLaunchArgument

    default = {} if argument.default is None else {"default_value": argument.default}
    return DeclareLaunchArgument(argument.name, description=argument.description, **default)


def start(context, described: System):
    """At launch time: argument values -> the described plan -> its actions."""
    from launch.substitutions import LaunchConfiguration

    given = {name: LaunchConfiguration(name).perform(context) for name in described.argument_names}
    started = plan(described, given, tempfile.mkdtemp(prefix=f"oft_{described.name}_"))
    actions = [include_action(include) for include in started.includes]
    actions += [process_action(process) for process in started.processes]
    for node in started.nodes:
        actions += node_actions(node)
    return actions


def include_action(include: Include):
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    return IncludeLaunchDescription(AnyLaunchDescriptionSource(include.path))


def process_action(process: Process):
    from launch.actions import ExecuteProcess

    write_files(process)
    return ExecuteProcess(**process_action_kwargs(process))


def node_actions(node: NodeSpec) -> list:
    from launch_ros.actions import LifecycleNode, Node
    from launch_ros.parameter_descriptions import ParameterValue

    kwargs = node_action_kwargs(node, keep_text=lambda text: ParameterValue(text, value_type=str))
    if not node.lifecycle:
        return [Node(**kwargs)]
    action = LifecycleNode(**kwargs)
    return [*drive_lifecycle(action, node.name), action]


def drive_lifecycle(action, node_name: str) -> list:
    """configure once the process runs; activate once configured; a failed configure shuts the launch down."""
    from launch.actions import EmitEvent, LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessStart
    from launch.events import Shutdown, matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change_state(transition):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(action), transition_id=transition))

    def after_configuring(goal_state, entities):
        return RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=action, start_state="configuring", goal_state=goal_state, entities=entities,
        ))

    failed = [
        LogInfo(msg=CONFIGURE_FAILED.format(node=node_name)),
        EmitEvent(event=Shutdown(reason=f"{node_name} configure failed")),
    ]
    return [
        after_configuring("inactive", [LogInfo(msg=f"{node_name} configured; activating"),
                                       change_state(Transition.TRANSITION_ACTIVATE)]),
        after_configuring("unconfigured", failed),
        after_configuring("errorprocessing", failed),
        RegisterEventHandler(OnProcessStart(target_action=action, on_start=[change_state(Transition.TRANSITION_CONFIGURE)])),
    ]
