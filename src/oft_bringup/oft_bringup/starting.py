"""How a described entry (oft_bringup.system) is started, once for each starter:
the keyword arguments of its launch / launch_ros action, and the argv `bringup` runs.

Both carry the same facts: package, executable, node name, parameter files
then parameter values (later wins, in rclpy and in launch_ros alike), and
remappings. Plain functions: no `launch` import. The argv functions import
oft_policy.processes (the suite's one way to find and start node processes)
when called: launch files load this module where oft_sim is not installed
(the executor image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

from oft_bringup.system import Include, NodeSpec, Process


def node_action_kwargs(node: NodeSpec, keep_text: Callable[[str], object] = lambda text: text) -> dict:
    """Keyword arguments of launch_ros' Node / LifecycleNode for `node`.

    `keep_text` wraps each string value (launch files pass ParameterValue(..., value_type=str)),
    since launch_ros would otherwise YAML-type it: an instruction "yes" would become a bool.
    """
    values = {key: keep_text(value) if isinstance(value, str) else value for key, value in node.parameters.items()}
    return {
        "package": node.package,
        "executable": node.executable,
        "name": node.name,
        "namespace": node.namespace,
        "output": "screen",
        "parameters": [*node.parameter_files, values],
        "remappings": list(node.remappings),
    }


def process_action_kwargs(process: Process) -> dict:
    """Keyword arguments of launch's ExecuteProcess for `process`."""
    return {"cmd": process_argv(process), "name": process.name, "output": "screen"}


def node_argv(node: NodeSpec) -> List[str]:
    """`<executable> --ros-args -r __node:=NAME --params-file F -p name:=value -r from:=to`, as `ros2 run` is given it."""
    from oft_policy.processes import node_command, ros_args

    head, *overrides = ros_args(node.parameters)
    rules = [("__node", node.name), *([("__ns", "/" + node.namespace.strip("/"))] if node.namespace else [])]
    files = [arg for path in node.parameter_files for arg in ("--params-file", path)]
    return [
        *node_command(node.package, node.executable, node.module), head,
        *_remap_args(rules), *files, *overrides, *_remap_args(node.remappings),
    ]


def write_files(process: Process) -> None:
    """What the process needs written before it starts (the only side effect here)."""
    for path, text in process.writes:
        Path(path).write_text(text)


def process_argv(process: Process) -> List[str]:
    if not process.package:
        return list(process.args)
    from oft_policy.processes import node_command

    return node_command(process.package, process.executable, process.module) + list(process.args)


def include_argv(include: Include) -> List[str]:
    """An included launch file, run by the ros2 CLI as a process of its own."""
    return ["ros2", "launch", include.path]


def _remap_args(rules) -> List[str]:
    return [arg for source, target in rules for arg in ("-r", f"{source}:={target}")]
