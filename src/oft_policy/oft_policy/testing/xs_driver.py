"""The ALOHA follower driver (interbotix_xs_sdk) as the simulator emulates it, without ROS.

One `XsArmState` per arm holds what the real driver holds: the operating mode and
torque of the group `arm` and of the single joint `gripper`, and it interprets every
command by the mode it finds, as the driver does:

- `position`, `current_based_position`, `ext_position`: goals in radians of the motor;
- `linear_position` (gripper): metres of finger travel, turned into a motor goal; a value
  outside the finger's travel has no valid goal and is refused;
- `velocity`, `current`, `pwm`: not position goals; the emulation refuses them (the
  simulated arm is position-controlled) and says so.

The driver starts as ALOHA's follower configuration does: arm in `position`, gripper in
`linear_position`, torque on. A group command whose length differs from the group's joint
count is refused. Motor units follow the rig's calibration (`oft_policy.calibration`): the
simulated gripper's opening (0 closed .. 1 open) is the follower's gripper joint and finger
position at the same fraction of their calibrated ranges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

from oft_policy import names
from oft_policy.calibration import Calibration
from oft_policy.runtime.limits import VX300S_MAX_VELOCITY, VX300S_POSITION_LIMITS

POSITION_MODES = ("position", "current_based_position", "ext_position")
LINEAR_MODE = "linear_position"
OTHER_MODES = ("velocity", "current", "pwm")
MODES = POSITION_MODES + (LINEAR_MODE,) + OTHER_MODES
PROFILE_TYPES = ("velocity", "time")

START_ARM_MODE = "position"
START_GRIPPER_MODE = LINEAR_MODE
"""ALOHA's follower motor configs (config/follower_modes_*.yaml) start the gripper in linear_position."""

FINGER_TOLERANCE_M = 0.002
"""A linear_position goal this far past the finger's travel is still clamped to it; farther has no goal."""

JOINT_IDS = {"waist": 1, "shoulder": 2, "elbow": 4, "forearm_roll": 6, "wrist_angle": 7, "wrist_rotate": 8, "gripper": 9}
"""Dynamixel IDs of a vx300s (the shoulder and elbow have a shadow motor: 3 and 5)."""

SLEEP_POSITIONS = {"waist": 0.0, "shoulder": -1.88, "elbow": 1.5, "forearm_roll": 0.0, "wrist_angle": 0.8,
                   "wrist_rotate": 0.0, "gripper": 0.0}


class DriverRefusal(ValueError):
    """What the driver would not do (its log line); nothing changed."""


@dataclass
class Motors:
    """Mode, profile and torque of one group or single joint."""

    mode: str
    profile_type: str = "velocity"
    profile_velocity: int = 0
    profile_acceleration: int = 0
    torque: bool = True


@dataclass
class XsArmState:
    """One follower arm's driver: modes, torque and the interpretation of commands."""

    calibration: Calibration
    arm: Motors = field(default_factory=lambda: Motors(START_ARM_MODE))
    gripper: Motors = field(default_factory=lambda: Motors(START_GRIPPER_MODE))
    refused: int = 0
    ignored_torque_off: int = 0

    # ---- services ------------------------------------------------------------------------------
    def set_operating_modes(self, cmd_type: str, name: str, mode: str, profile_type: str,
                            profile_velocity: int, profile_acceleration: int) -> None:
        if mode not in MODES:
            raise DriverRefusal(f"operating mode {mode!r} is not one of {', '.join(MODES)}")
        if profile_type not in PROFILE_TYPES:
            raise DriverRefusal(f"profile type {profile_type!r} is not one of {', '.join(PROFILE_TYPES)}")
        for motors in self._motors(cmd_type, name):
            if motors is self.arm and mode == LINEAR_MODE:
                raise DriverRefusal("linear_position is a gripper mode; the arm group cannot take it")
            motors.mode, motors.profile_type = mode, profile_type
            motors.profile_velocity, motors.profile_acceleration = int(profile_velocity), int(profile_acceleration)

    def torque_enable(self, cmd_type: str, name: str, enable: bool) -> None:
        for motors in self._motors(cmd_type, name):
            motors.torque = bool(enable)

    def reboot(self, cmd_type: str, name: str, enable: bool) -> None:
        for motors in self._motors(cmd_type, name):
            motors.torque = bool(enable)

    def robot_info(self, cmd_type: str, name: str) -> dict:
        """The RobotInfo response fields; a `gripper` is described by its `left_finger` joint, as the driver does."""
        if cmd_type == "group" and name == names.INTERBOTIX_ARM_GROUP:
            motors, joints = self.arm, list(names.ARM_GROUP_JOINTS)
        elif cmd_type == "single" and name == names.GRIPPER_JOINT:
            motors, joints = self.gripper, [names.FINGER_JOINTS[0]]
        elif cmd_type == "single" and name in names.ARM_GROUP_JOINTS:
            motors, joints = self.arm, [name]
        else:
            raise DriverRefusal(f"no {cmd_type} named {name!r}")
        lower, upper = zip(*(self._limits(j) for j in joints))
        state_names = list(names.DRIVER_JOINT_STATE_NAMES)
        return {
            "mode": motors.mode, "profile_type": motors.profile_type, "joint_names": joints,
            "joint_ids": [JOINT_IDS.get(j, JOINT_IDS["gripper"]) for j in joints],
            "joint_lower_limits": list(lower), "joint_upper_limits": list(upper),
            "joint_velocity_limits": [VX300S_MAX_VELOCITY] * len(joints),
            "joint_sleep_positions": [SLEEP_POSITIONS.get(j, 0.0) for j in joints],
            "joint_state_indices": [state_names.index(j) for j in joints],
            "num_joints": len(joints), "name": [name],
        }

    # ---- commands -> the simulated arm's targets (arm rad, gripper opening 0..1) -------------
    def arm_goals(self, group: str, cmd: Sequence[float]) -> List[float]:
        if group != names.INTERBOTIX_ARM_GROUP:
            raise DriverRefusal(f"joint_group command for unknown group {group!r}")
        values = [float(v) for v in cmd]
        if len(values) != len(names.ARM_GROUP_JOINTS):
            raise DriverRefusal(f"group {group!r} has {len(names.ARM_GROUP_JOINTS)} joints, command has {len(values)}")
        self._require_position_goal(self.arm, group, values)
        return values

    def gripper_opening(self, joint: str, cmd: float) -> float:
        """The simulated gripper opening a single `gripper` command asks for, by the gripper's mode."""
        if joint != names.GRIPPER_JOINT:
            raise DriverRefusal(f"joint_single command for {joint!r}; the emulation takes 'gripper' only")
        value = float(cmd)
        self._require_position_goal(self.gripper, joint, [value])
        if self.gripper.mode == LINEAR_MODE:
            finger = self.calibration.follower_finger
            if not finger.low - FINGER_TOLERANCE_M <= value <= finger.high + FINGER_TOLERANCE_M:
                raise DriverRefusal(
                    f"linear_position goal {value:.4f} m is outside the finger's travel "
                    f"{finger.low:g}..{finger.high:g} m: no valid motor goal"
                )
            return float(np.clip(finger.normalize(value), 0.0, 1.0))
        return float(self.calibration.follower_joint.normalize(value))

    # ---- telemetry -----------------------------------------------------------------------------
    def joint_state(self, arm_positions: Sequence[float], opening: float) -> Tuple[list, list]:
        """(names, positions) of the driver's joint_states for 6 arm joints (rad) and a gripper opening."""
        finger = float(self.calibration.follower_finger.denormalize(opening))
        gripper = float(self.calibration.follower_joint.denormalize(opening))
        return list(names.DRIVER_JOINT_STATE_NAMES), [*map(float, arm_positions), gripper, finger, -finger]

    # ---- internals -----------------------------------------------------------------------------
    def _motors(self, cmd_type: str, name: str) -> List[Motors]:
        if cmd_type == "group" and name == "all":
            return [self.arm, self.gripper]
        if cmd_type == "group" and name == names.INTERBOTIX_ARM_GROUP:
            return [self.arm]
        if cmd_type == "single" and name == names.GRIPPER_JOINT:
            return [self.gripper]
        raise DriverRefusal(f"no {cmd_type} named {name!r} (groups: all, arm; single joints: gripper)")

    def _require_position_goal(self, motors: Motors, what: str, values: Sequence[float]) -> None:
        if not motors.torque:
            self.ignored_torque_off += 1
            raise DriverRefusal(f"{what}: torque is off, command not executed")
        if motors.mode in OTHER_MODES:
            raise DriverRefusal(f"{what} is in {motors.mode} mode; the simulated arm takes position goals only")
        if not np.all(np.isfinite(values)):
            raise DriverRefusal(f"{what}: non-finite command {list(values)}")

    def _limits(self, joint: str) -> Tuple[float, float]:
        if joint == names.FINGER_JOINTS[0]:
            finger = self.calibration.follower_finger
            return finger.low, finger.high
        return VX300S_POSITION_LIMITS[joint]
