"""Check launch files against the built workspace, without `launch` installed.

For every `Node` / `LifecycleNode` in a launch file (read by
`oft_bringup.static_launch`):
- its package and executable exist where `ros2 run` looks;
- every parameter file it names exists, has a section for the node, and each
  key there is a parameter the node declares (as do keys of inline dicts);
- every remapped name is a topic or service the node actually uses;
- `LifecycleNode` is used exactly for lifecycle node classes.
Also: included launch files exist and declare the arguments passed to them,
every `LaunchConfiguration` names a declared argument, and every executable an
`ExecuteProcess` would run from this workspace exists.

Node facts come from `oft_bringup.node_interface.introspect_node` (the real
node built in-process); callers may pass their own provider, e.g. to give the
policy node a checkpoint so it can be configured.

Console script: `check_launch FILE... [name:=value ...]` prints the problems
and exits non-zero when there are any.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import yaml

from oft_bringup.node_interface import (
    IntrospectionError,
    NodeInterface,
    executable_path,
    flatten_parameters,
    introspect_node,
    yaml_sections_for,
)
from oft_bringup.static_launch import (
    LaunchFile,
    NodeAction,
    PackageExecutable,
    TypedValue,
    Unknown,
    read_launch_file,
    resolve,
    resolve_text,
)

InterfaceProvider = Callable[..., NodeInterface]
"""(package, executable, *, node_name, namespace, params_files, overrides) -> NodeInterface,
called with the parameters the launch file gives the node, so it is built as launched."""


@dataclass
class NodeReport:
    package: object
    executable: object
    name: Optional[str]
    line: int
    parameter_files: List[str] = field(default_factory=list)
    interface: Optional[NodeInterface] = None


@dataclass
class LaunchReport:
    path: Path
    launch_file: LaunchFile
    nodes: List[NodeReport] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what was not checked, and why

    @property
    def ok(self) -> bool:
        return not self.problems


def default_interface_provider(configure: bool = False) -> InterfaceProvider:
    """Builds each distinct node set-up once (per provider) and remembers the result or the error.

    `configure=True` configures lifecycle nodes before reading their topics (they
    create them there), which needs parameters that let configuring succeed.
    """
    cache: Dict[tuple, object] = {}

    def provide(package, executable, *, node_name=None, namespace=None, params_files=(), overrides=None):
        overrides = dict(overrides or {})
        key = (package, executable, node_name, namespace, tuple(params_files), repr(sorted(overrides.items())))
        if key not in cache:
            try:
                cache[key] = introspect_node(
                    package, executable, node_name=node_name, namespace=namespace,
                    params_files=params_files, overrides=overrides, configure=configure,
                )
            except IntrospectionError as exc:
                cache[key] = exc
        if isinstance(cache[key], Exception):
            raise cache[key]
        return cache[key]

    return provide


def check_launch_file(
    path,
    arguments: Optional[Dict[str, object]] = None,
    interface_provider: Optional[InterfaceProvider] = None,
) -> LaunchReport:
    """All problems of one launch file; `arguments` are launch arguments as on the command line."""
    arguments = dict(arguments or {})
    provider = interface_provider or default_interface_provider()
    launch_file = read_launch_file(path)
    report = LaunchReport(path=Path(path), launch_file=launch_file, problems=list(launch_file.problems))

    for name, line in sorted(launch_file.used_args.items()):
        if name not in launch_file.declared:
            report.problems.append(f"line {line}: LaunchConfiguration('{name}') has no DeclareLaunchArgument")
    for name in arguments:
        if name not in launch_file.declared:
            report.problems.append(f"argument '{name}' given but not declared by {Path(path).name}")

    for action in launch_file.nodes:
        report.nodes.append(_check_node(action, launch_file, arguments, provider, report.problems, report.notes))
    for include in launch_file.includes:
        _check_include(include, launch_file, arguments, report.problems, provider)
    for process in launch_file.processes:
        _check_process(process, launch_file, arguments, report.problems)
    return report


def _check_node(action: NodeAction, launch_file, arguments, provider, problems, notes) -> NodeReport:
    where = f"line {action.line}"
    values = {key: resolve(value, arguments, launch_file.declared) for key, value in action.kwargs.items()}
    package, executable = values.get("package"), values.get("executable")
    name = values.get("name") if isinstance(values.get("name"), str) else None
    namespace = values.get("namespace") if isinstance(values.get("namespace"), str) else ""
    node = NodeReport(package=package, executable=executable, name=name, line=action.line)
    if not isinstance(package, str) or not isinstance(executable, str):
        problems.append(f"{where}: {action.kind} package/executable must be plain strings, got {package!r}/{executable!r}")
        return node
    where = f"{where} ({package}/{executable})"
    try:
        executable_path(package, executable)
    except IntrospectionError as exc:
        problems.append(f"{where}: {exc}")
        return node

    parameters = action.get("parameters") or []
    remappings = action.get("remappings") or []
    if not parameters and not remappings and action.kind == "Node":
        return node  # nothing declared about the node to check against it
    params_files, overrides = _split_parameters(parameters, launch_file, arguments, where, problems)
    node.parameter_files = list(params_files)
    try:
        interface = provider(
            package, executable, node_name=name, namespace=namespace or None,
            params_files=params_files,
            overrides={key: value for key, value in overrides.items() if not isinstance(value, Unknown)},
        )
    except IntrospectionError as exc:
        problems.append(f"{where}: {exc}")
        return node
    node.interface = interface
    if action.kind == "LifecycleNode" and not interface.is_lifecycle:
        problems.append(f"{where}: launched as LifecycleNode but {interface.class_name} is not a lifecycle node")
    if action.kind == "Node" and interface.is_lifecycle:
        problems.append(f"{where}: {interface.class_name} is a lifecycle node; launch it with LifecycleNode")

    node_name = name or interface.node_name
    ns = namespace or interface.namespace or "/"
    for key in overrides:
        if key not in interface.parameters:
            problems.append(f"{where}: parameter '{key}' is not declared by {interface.class_name}")
    for params_path in params_files:
        problems.extend(f"{where}: {p}" for p in check_parameter_file(params_path, interface, node_name, ns))
    if remappings and interface.is_lifecycle and not interface.configured:
        notes.append(f"{where}: remappings not checked: lifecycle node not configured (topics are made in configure)")
    else:
        problems.extend(_remapping_problems(remappings, interface, node_name, ns, launch_file, arguments, where))
    return node


def _split_parameters(parameters, launch_file, arguments, where, problems):
    """`parameters=[...]` -> (existing parameter files, {name: value} of the inline dicts), as launch_ros passes them."""
    params_files, overrides = [], {}
    for item in parameters:
        if isinstance(item, dict):
            for key, value in item.items():
                key_text = resolve_text(key, arguments, launch_file.declared)
                if isinstance(key_text, Unknown):
                    problems.append(f"{where}: parameter name not known statically: {key_text}")
                    continue
                # Unknown values (e.g. a required argument not given) still name a parameter to check.
                overrides[key_text] = _launch_parameter_value(value, arguments, launch_file.declared)
            continue
        params_path = resolve_text(item, arguments, launch_file.declared)
        if isinstance(params_path, Unknown):
            problems.append(f"{where}: parameter file not known statically: {params_path}")
        elif not Path(params_path).is_file():
            problems.append(f"{where}: parameter file {params_path} does not exist")
        else:
            params_files.append(params_path)
    return params_files, overrides


def _remapping_problems(remappings, interface, node_name, namespace, launch_file, arguments, where):
    problems = []
    for pair in remappings:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            problems.append(f"{where}: remapping {pair!r} is not a (from, to) pair")
            continue
        source = resolve_text(pair[0], arguments, launch_file.declared)
        if isinstance(source, Unknown):
            problems.append(f"{where}: remapping source not known statically: {source}")
            continue
        if _expand_name(source, node_name, namespace) not in interface.topics | interface.services:
            used = ", ".join(sorted(interface.topics)) or "none"
            problems.append(
                f"{where}: remapping '{source}' matches no topic or service of {interface.class_name} (its topics: {used})"
            )
    return problems


def _launch_parameter_value(value, arguments, declared):
    """A parameter value as launch_ros passes it: substitutions become text, then YAML-typed
    (unless wrapped in ParameterValue(..., value_type=str), which stays text)."""
    if isinstance(value, TypedValue):
        if value.value_type is str:
            return resolve_text(value.value, arguments, declared)
        value = value.value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        return list(value)
    if isinstance(value, (bool, int, float)):
        return value
    text = resolve_text(value, arguments, declared)
    if isinstance(text, Unknown):
        return text
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def check_parameter_file(path, interface: NodeInterface, node_name: str, namespace: str = "/") -> List[str]:
    """Problems of one parameter file for one node: missing file, no section, undeclared keys."""
    path = Path(path)
    if not path.is_file():
        return [f"parameter file {path} does not exist"]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"parameter file {path.name} is not valid YAML: {exc}"]
    sections = list(yaml_sections_for(data, node_name, namespace))
    if not sections:
        return [f"parameter file {path.name} has no section for node '{node_name}' (nor '/**')"]
    problems = []
    for section in sections:
        for key in flatten_parameters(section):
            if key not in interface.parameters:
                problems.append(f"{path.name}: '{key}' is not a parameter {interface.class_name} declares")
    return problems


def _expand_name(name: str, node_name: str, namespace: str) -> str:
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("~"):
        return f"{namespace}/{node_name}{name[1:]}"
    if name.startswith("/"):
        return name
    return f"{namespace}/{name}"


def _check_include(include, launch_file, arguments, problems, provider):
    """The included file exists, declares what is passed to it, and passes its own checks with those values."""
    where = f"line {include.line}"
    source = include.args[0] if include.args else include.kwargs.get("launch_description_source")
    condition = include.kwargs.get("condition")
    if getattr(source, "kind", None) != "PythonLaunchDescriptionSource":
        problems.append(f"{where}: IncludeLaunchDescription without a PythonLaunchDescriptionSource")
        return
    target_value = source.args[0] if source.args else source.kwargs.get("launch_file_path")
    target = resolve_text(target_value, arguments, launch_file.declared)
    if isinstance(target, Unknown):
        if condition is None:
            problems.append(f"{where}: included file not known statically and included unconditionally: {target}")
        return  # an optional include named by the user at launch time
    if target == "" and condition is not None:
        return  # an optional include, off by default (its condition checks for an empty name)
    if not Path(target).is_file():
        problems.append(f"{where}: included launch file {target} does not exist")
        return
    passed = include.kwargs.get("launch_arguments") or []
    passed = list(passed.items() if isinstance(passed, dict) else passed)
    values = {}
    for pair in passed:
        key = resolve_text(pair[0], arguments, launch_file.declared)
        value = resolve_text(pair[1], arguments, launch_file.declared)
        if isinstance(key, str) and not isinstance(value, Unknown):
            values[key] = value
    included = check_launch_file(target, values, provider)
    name = Path(target).name
    problems.extend(f"{where}: in included {name}: {p}" for p in included.problems)


def _check_process(process, launch_file, arguments, problems):
    where = f"line {process.line}"
    cmd = process.kwargs.get("cmd", process.args[0] if process.args else None)
    if not isinstance(cmd, (list, tuple)) or not cmd:
        problems.append(f"{where}: ExecuteProcess without a cmd list")
        return
    program = cmd[0]
    if isinstance(program, PackageExecutable):
        resolved = resolve(program, arguments, launch_file.declared)
        if isinstance(resolved, Unknown):
            problems.append(f"{where}: ExecuteProcess program: {resolved.reason}")
    elif isinstance(resolve_text(program, arguments, launch_file.declared), Unknown):
        problems.append(f"{where}: ExecuteProcess program not known statically")
    # A program from PATH (e.g. `ros2`) belongs to the user's ROS install: not checked here.


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="check_launch",
        description="Check launch files against the built workspace without launch/launch_ros: "
        "executables, parameter files and keys, remapped topics, included files, launch arguments.",
    )
    parser.add_argument("items", nargs="+", metavar="FILE | name:=value",
                        help="launch files (*.launch.py) and launch arguments (name:=value)")
    parser.add_argument("--configure", action="store_true",
                        help="configure lifecycle nodes to check remappings of the topics they make there "
                        "(the policy node then loads the checkpoint)")
    options = parser.parse_args(argv)
    files = [item for item in options.items if ":=" not in item]
    launch_arguments = dict(item.split(":=", 1) for item in options.items if ":=" in item)
    provider = default_interface_provider(configure=options.configure)
    failed = False
    for path in files:
        if not os.path.isfile(path):
            print(f"{path}: no such file", file=sys.stderr)
            failed = True
            continue
        report = check_launch_file(path, launch_arguments, provider)
        for problem in report.problems:
            print(f"{path}: {problem}")
        for note in report.notes:
            print(f"{path}: note: {note}")
        failed |= not report.ok
        print(f"{path}: {len(report.nodes)} node(s), {'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
