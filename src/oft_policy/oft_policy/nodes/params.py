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


CALIBRATION_PARAMETERS = (
    ParamSpec("calibration", "aloha2", "Gripper calibration preset of the rig: 'aloha2' (ALOHA 2, the ALOHA ROS 2 stack) or 'aloha1' (original ALOHA)."),
    *(
        ParamSpec(f"calibration_{span}", None, f"[closed, open] of the {span.replace('_', ' ')} ({unit}), overriding the preset.",
                  Parameter.Type.DOUBLE_ARRAY)
        for span, unit in (("follower_joint", "rad"), ("follower_finger", "m"), ("leader_joint", "rad"), ("leader_finger", "m"))
    ),
)
"""The robot's gripper calibration (oft_policy.calibration), the same parameters on every node that converts."""


def calibration_from_parameters(values: dict):
    """The Calibration the CALIBRATION_PARAMETERS values name (preset, then any overridden span)."""
    from oft_policy.calibration import RANGES, calibration_preset

    spans = {span: values.get(f"calibration_{span}") for span in RANGES}
    return calibration_preset(values["calibration"]).with_overrides(**spans)

