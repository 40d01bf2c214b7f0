"""ROS message type names and the `rosbags` type store both the recorder and the reader use.

Type names are accepted as ``pkg/Type`` or ``pkg/msg/Type``. Types the bundled
Jazzy store does not know (the suite's own ``oft_msgs``) are registered from
their ``.msg`` definition, found in the ament index (recording) or in the bag
itself (reading).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from rosbags.typesys import Stores, get_typestore, get_types_from_msg

IMAGE = "sensor_msgs/msg/Image"
JOINT_STATE = "sensor_msgs/msg/JointState"
FLOAT64_ARRAY = "std_msgs/msg/Float64MultiArray"
BOOL = "std_msgs/msg/Bool"
STRING = "std_msgs/msg/String"


class MessageTypeError(ValueError):
    """A message type name is malformed or its definition cannot be found."""


def canonical_type(name: str) -> str:
    """``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image`` (the form rosbag2 stores)."""
    parts = name.strip().split("/")
    if len(parts) == 2 and all(parts):
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3 and parts[1] == "msg" and parts[0] and parts[2]:
        return name.strip()
    raise MessageTypeError(f"message type {name!r} is not of the form pkg/Type or pkg/msg/Type")


def rclpy_class(type_name: str):
    """The generated rclpy message class of a type name."""
    package, _, cls = canonical_type(type_name).split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), cls)
    except (ImportError, AttributeError) as exc:
        raise MessageTypeError(f"cannot import message type {type_name!r}: {exc}") from exc


def new_typestore():
    """A fresh Jazzy type store (one per bag: bags may carry their own definitions)."""
    return get_typestore(Stores.ROS2_JAZZY)


def _msg_file(type_name: str) -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    package, _, cls = type_name.split("/")
    try:
        path = Path(get_package_share_directory(package)) / "msg" / f"{cls}.msg"
    except PackageNotFoundError as exc:
        raise MessageTypeError(f"package {package!r} of message type {type_name} is not installed") from exc
    if not path.is_file():
        raise MessageTypeError(f"no definition {path.name} for message type {type_name}")
    return path


def ensure_registered(typestore, type_name: str) -> None:
    """Register ``type_name`` (and any unknown field types) from installed ``.msg`` files."""
    pending = [canonical_type(type_name)]
    while pending:
        current = pending.pop()
        if current in typestore.fielddefs:
            continue
        types = get_types_from_msg(_msg_file(current).read_text(), current)
        typestore.register(types)
        for _, (_, fields) in types.items():
            for _, field in fields:
                pending.extend(_nested_type_names(field))


def _nested_type_names(field) -> list:
    """Type names a parsed field refers to (rosbags encodes fields as nested tuples)."""
    names = []
    stack = [field]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(item)
        elif isinstance(item, str) and item.count("/") == 2:
            names.append(item)
    return names


def register_from_bag(typestore, connections) -> None:
    """Register the definitions a bag carries for types the store does not know."""
    for conn in connections:
        if conn.msgtype in typestore.fielddefs or not conn.msgdef or not conn.msgdef.data:
            continue
        if conn.msgdef.data.startswith("=" * 80 + "\nIDL: "):
            continue  # IDL definitions: leave unknown; decoding reports them.
        typestore.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
