"""Declaring a node's parameters from one table, each with its description."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    unset_type: Optional[Parameter.Type] = None  # for parameters without a default (default None)

    def declare(self, node) -> None:
        value = self.unset_type if self.default is None else self.default
        if isinstance(value, tuple):
            value = list(value)
        node.declare_parameter(self.name, value, ParameterDescriptor(description=self.description))


def declare_parameters(node, table: Sequence[ParamSpec]) -> dict:
    """Declare every parameter of `table` on `node`; returns {name: value} (None when left unset)."""
    for spec in table:
        spec.declare(node)
    return read_parameters(node, table)


def read_parameters(node, table: Sequence[ParamSpec]) -> dict:
    values = {}
    for spec in table:
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = None
        values[spec.name] = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "tolist") else value
    return values


def parameter_table_markdown(table: Sequence[ParamSpec]) -> str:
    """The table as Markdown (for docs and for writing parameter files)."""
    lines = ["| parameter | default | description |", "|---|---|---|"]
    for spec in table:
        default = "(unset)" if spec.default is None else repr(list(spec.default) if isinstance(spec.default, tuple) else spec.default)
        lines.append(f"| `{spec.name}` | `{default}` | {spec.description} |")
    return "\n".join(lines)
