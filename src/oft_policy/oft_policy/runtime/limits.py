"""Joint position and velocity limits, and the filter every outgoing command passes.

Limits apply in the policy's convention (oft_policy.calibration): defaults are
the ViperX 300 s (vx300s) arms of ALOHA, the joint ranges of the Interbotix
description (also used by the ALOHA MuJoCo models), with each gripper normalized
0 closed .. 1 open (the calibration turns that into the follower's own gripper
joint range at the robot boundary), and the description's velocity limit of
pi rad/s on every joint (per second of normalized travel for the grippers,
about the motor's pi rad/s over its one-radian range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from oft_policy.names import ARM_JOINTS

VX300S_POSITION_LIMITS = {
    "waist": (-3.14158, 3.14158),
    "shoulder": (-1.85005, 1.25664),
    "elbow": (-1.76278, 1.6057),
    "forearm_roll": (-3.14158, 3.14158),
    "wrist_angle": (-1.8675, 2.23402),
    "wrist_rotate": (-3.14158, 3.14158),
    "gripper": (0.0, 1.0),
}
"""(lower, upper) per vx300s joint: radians; the gripper normalized (0 closed .. 1 open)."""

VX300S_MAX_VELOCITY = math.pi
"""rad/s, every joint."""


class LimitsError(ValueError):
    """Limits that are malformed or do not match the joint names."""


def arm_joint_of(name: str) -> str:
    """The vx300s joint a suite-wide name refers to (`left_elbow` -> `elbow`, `gripper` -> `gripper`)."""
    for joint in sorted(ARM_JOINTS, key=len, reverse=True):
        if name == joint or name.endswith("_" + joint):
            return joint
    raise LimitsError(f"joint {name!r} is not a vx300s joint; give its limits explicitly")


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position range and maximum speed, in the order of `joint_names`."""

    joint_names: tuple
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    def __post_init__(self):
        dim = len(self.joint_names)
        for what in ("lower", "upper", "max_velocity"):
            values = getattr(self, what)
            if values.shape != (dim,):
                raise LimitsError(f"{what} has shape {values.shape}, expected ({dim},) for {dim} joints")
            if not np.all(np.isfinite(values)):
                raise LimitsError(f"{what} contains NaN or Inf")
        if np.any(self.lower >= self.upper):
            bad = [n for n, lo, hi in zip(self.joint_names, self.lower, self.upper) if lo >= hi]
            raise LimitsError(f"lower limit not below upper limit for {', '.join(bad)}")
        if np.any(self.max_velocity <= 0):
            raise LimitsError("velocity limits must be positive")

    @classmethod
    def create(cls, joint_names: Sequence[str], lower, upper, max_velocity) -> "JointLimits":
        return cls(
            joint_names=tuple(joint_names),
            lower=np.asarray(lower, dtype=np.float64),
            upper=np.asarray(upper, dtype=np.float64),
            max_velocity=np.asarray(max_velocity, dtype=np.float64),
        )

    @classmethod
    def vx300s(cls, joint_names: Sequence[str]) -> "JointLimits":
        """ALOHA defaults for names like `left_waist` .. `right_gripper`."""
        ranges = [VX300S_POSITION_LIMITS[arm_joint_of(n)] for n in joint_names]
        return cls.create(
            joint_names,
            [lo for lo, _ in ranges],
            [hi for _, hi in ranges],
            [VX300S_MAX_VELOCITY] * len(joint_names),
        )

    @property
    def span(self) -> np.ndarray:
        return self.upper - self.lower

    def excess(self, positions: np.ndarray) -> np.ndarray:
        """How far each value lies outside its range (0 inside), broadcasting over leading dims."""
        return np.maximum(self.lower - positions, 0.0) + np.maximum(positions - self.upper, 0.0)


class SafetyFilter:
    """Clamps a target into the position limits, then limits the step from the previous command.

    The step limit is `max_velocity * control_period_s` per tick, so a target far
    away is approached at the maximum speed instead of jumped to.
    """

    def __init__(self, limits: JointLimits, control_period_s: float):
        if not control_period_s > 0:
            raise LimitsError(f"control period must be positive, got {control_period_s}")
        self.limits = limits
        self.max_step = limits.max_velocity * control_period_s

    def clamp_position(self, target: np.ndarray) -> np.ndarray:
        return np.clip(target, self.limits.lower, self.limits.upper)

    def apply(self, target: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """The command to send this tick for `target`, given the command sent last tick."""
        clamped = self.clamp_position(target)
        step = np.clip(clamped - previous, -self.max_step, self.max_step)
        # `previous` may lie outside the limits (a measured start position): walk back into
        # range at the step limit instead of clamping, which would jump.
        lower = np.minimum(self.limits.lower, previous)
        upper = np.maximum(self.limits.upper, previous)
        return np.clip(previous + step, lower, upper)
