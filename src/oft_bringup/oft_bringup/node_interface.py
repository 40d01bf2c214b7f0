"""What a node declares, read by building it in-process with rclpy.

`introspect_node(package, executable)` finds the node class behind a console
script (through the installed script's entry point), constructs it in a
private rclpy context with the given parameter files and overrides, and
records its declared parameters (value, type, description), the topics it
publishes and subscribes, and its services. A lifecycle node is optionally
configured first, since that is where it creates its topics.

No `launch` needed: this is what lets launch files and parameter files be
checked on a machine with rclpy alone.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

from oft_policy.processes import ros_args

RCLPY_BUILTIN_PARAMETERS = ("use_sim_time", "start_type_description_service")
"""Parameters rclpy declares on every node (not the node author's to document)."""


class IntrospectionError(RuntimeError):
    """The node could not be found or built; the message says why."""


@dataclass(frozen=True)
class ParameterInfo:
    value: object
    type_name: str
    description: str


@dataclass
class NodeInterface:
    package: str
    executable: str
    class_name: str
    node_name: str
    namespace: str
    is_lifecycle: bool
    configured: bool
    parameters: Dict[str, ParameterInfo] = field(default_factory=dict)
    publishers: Dict[str, str] = field(default_factory=dict)  # topic -> message type
    subscriptions: Dict[str, str] = field(default_factory=dict)
    services: set = field(default_factory=set)

    @property
    def topics(self) -> set:
        return set(self.publishers) | set(self.subscriptions)

    def own_parameters(self) -> Dict[str, ParameterInfo]:
        """Declared parameters minus the ones rclpy adds to every node."""
        return {k: v for k, v in self.parameters.items() if k not in RCLPY_BUILTIN_PARAMETERS}


def executable_path(package: str, executable: str) -> Path:
    """Where `ros2 run package executable` looks: <prefix>/lib/<package>/<executable>."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = get_package_prefix(package)
    except (PackageNotFoundError, ValueError) as exc:
        raise IntrospectionError(f"package '{package}' is not in the ament index (not built/sourced?): {exc}") from None
    path = Path(prefix) / "lib" / package / executable
    if not path.is_file() or not os.access(path, os.X_OK):
        raise IntrospectionError(f"package '{package}' has no executable '{executable}' (looked for {path})")
    return path


_ENTRY_HEADER = re.compile(r"EASY-INSTALL-ENTRY-SCRIPT:\s*'([^']+)','console_scripts','([^']+)'")


def entry_point_target(package: str, executable: str) -> str:
    """`module:function` behind an installed console script."""
    script = executable_path(package, executable)
    header = _ENTRY_HEADER.search(script.read_text(errors="replace")[:2000])
    candidates = []
    if header:
        dist_name, name = header.groups()
        try:
            candidates = [
                ep for ep in importlib.metadata.distribution(dist_name).entry_points
                if ep.group == "console_scripts" and ep.name == name
            ]
        except importlib.metadata.PackageNotFoundError:
            candidates = []
    if not candidates:
        normalized = package.replace("_", "-")
        candidates = [
            ep for ep in importlib.metadata.entry_points(group="console_scripts")
            if ep.name == executable and ep.dist is not None
            and ep.dist.metadata["Name"].replace("_", "-") == normalized
        ]
    if not candidates:
        raise IntrospectionError(f"{script} is not a console script of a Python package with metadata")
    return candidates[0].value


def find_node_class(package: str, executable: str):
    """The rclpy Node subclass the console script's module defines (exactly one expected)."""
    from rclpy.node import Node

    target = entry_point_target(package, executable)
    module_name = target.split(":")[0]
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise IntrospectionError(f"importing {module_name} for {package}/{executable} failed: {exc!r}") from exc
    classes = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Node) and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        names = [c.__name__ for c in classes]
        raise IntrospectionError(
            f"{module_name} (behind {package}/{executable}) should define exactly one rclpy Node subclass; found {names}"
        )
    return classes[0]


def _type_name(parameter) -> str:
    return parameter.type_.name if hasattr(parameter.type_, "name") else str(parameter.type_)


def _normalize(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def introspect_node(
    package: str,
    executable: str,
    *,
    node_name: Optional[str] = None,
    namespace: Optional[str] = None,
    params_files: Sequence[os.PathLike] = (),
    overrides: Optional[dict] = None,
    configure: bool = False,
) -> NodeInterface:
    """Build the node behind `package/executable` in a private context and read what it declares.

    `params_files` go through rclpy's own `--params-file` handling and `overrides`
    through `-p name:=value`, exactly as a launch file or `ros2 run` passes them.
    With `configure=True` a lifecycle node is configured before its topics are read.
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

    cls = find_node_class(package, executable)
    accepted = inspect.signature(cls.__init__).parameters
    if "context" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        raise IntrospectionError(f"{cls.__name__}.__init__ must accept context= (or **kwargs) to be built in a private context")

    args = ros_args(overrides or {}, node_name, namespace, params_files)

    context = Context()
    rclpy.init(args=args, context=context)
    node = None
    try:
        try:
            node = cls(context=context)
        except Exception as exc:
            raise IntrospectionError(f"building {cls.__name__} for {package}/{executable} failed: {exc!r}") from exc
        is_lifecycle = isinstance(node, LifecycleNode)
        configured = False
        if configure and is_lifecycle:
            outcome = node.trigger_configure()
            if outcome != TransitionCallbackReturn.SUCCESS:
                raise IntrospectionError(f"configuring {cls.__name__} returned {outcome}")
            configured = True
        interface = NodeInterface(
            package=package,
            executable=executable,
            class_name=cls.__name__,
            node_name=node.get_name(),
            namespace=node.get_namespace(),
            is_lifecycle=is_lifecycle,
            configured=configured,
        )
        for name in sorted(node._parameters):
            parameter = node._parameters[name]  # get_parameter() raises for declared-but-unset ones
            descriptor = node.describe_parameter(name)
            interface.parameters[name] = ParameterInfo(parameter.value, _type_name(parameter), descriptor.description)
        for publisher in node.publishers:
            interface.publishers[_normalize(publisher.topic_name)] = _msg_type_name(publisher.msg_type)
        for subscription in node.subscriptions:
            interface.subscriptions[_normalize(subscription.topic_name)] = _msg_type_name(subscription.msg_type)
        interface.services = {_normalize(service.srv_name) for service in node.services}
    finally:
        destroy_error = _destroy(node)
        context.try_shutdown()
    if destroy_error is not None:
        raise IntrospectionError(f"destroying {cls.__name__} failed: {destroy_error!r}")
    return interface


def _destroy(node):
    """destroy_node() of a node we built; its exception (a bug in the node) is returned, not raised."""
    if node is None:
        return None
    try:
        node.destroy_node()
    except Exception as exc:
        return exc
    return None


def _msg_type_name(msg_type) -> str:
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}" if len(module) >= 2 else msg_type.__name__


def yaml_sections_for(data: dict, node_name: str, namespace: str = "/") -> Iterable[dict]:
    """The `ros__parameters` blocks of a parameter file that apply to one node.

    Keys rclpy matches: `/**`, the node's fully qualified name (with or without
    the leading slash, so a bare name is a node in the root namespace), and
    `/**/name`; or a namespace key holding a node-name key.
    """
    namespace = namespace if namespace.endswith("/") else namespace + "/"
    full = f"{namespace}{node_name}"
    accepted = {"/**", "**", full, full.lstrip("/"), f"/**/{node_name}"}  # a bare name means the root namespace
    for key, block in (data or {}).items():
        if key in accepted and isinstance(block, dict) and "ros__parameters" in block:
            yield block["ros__parameters"]
        elif isinstance(block, dict) and "ros__parameters" not in block:
            # Namespaced layout: {namespace: {node: {ros__parameters: ...}}}.
            for inner_key, inner in block.items():
                if f"/{key.strip('/')}/{inner_key}" == full and isinstance(inner, dict):
                    yield inner.get("ros__parameters", {})


def flatten_parameters(block: dict, prefix: str = "") -> Dict[str, object]:
    """Nested YAML dicts -> dotted parameter names, as rclpy reads them."""
    flat = {}
    for key, value in (block or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_parameters(value, name + "."))
        else:
            flat[name] = value
    return flat
