"""The robot boundary: the policy's convention on one side, ALOHA robot units on the other.

The convention (``CONVENTION``) is the ALOHA dataset convention, the one of ALOHA's
own hdf5 episodes, ACT, LeRobot's ALOHA datasets and openvla-oft's ALOHA data:

- the six arm joints of each side in radians, as the driver reports them;
- the observed gripper (``observation.state``) is the follower's finger position,
  normalized to 0 closed .. 1 open;
- the action's gripper is the leader's gripper joint, normalized the same way; a
  follower executes it as its gripper joint at the same fraction of its own range.

A ``Calibration`` holds the open/closed numbers of one rig (ALOHA 2 and the original
ALOHA as presets, any value overridable). Every conversion between robot units and
the convention goes through it: recording export, normalizer fitting, the policy
node's proprio, the executor's commands and the simulator. Checkpoints, datasets and
normalizer statistics record the convention and calibration they were made with
(``convention_record``); ``check_convention`` refuses anything else.
"""

from __future__ import annotations

import functools

import math
from dataclasses import asdict, dataclass, replace
from typing import Mapping, Optional, Sequence, Tuple

import numpy as np

from oft_policy import names

CONVENTION = "aloha_dataset"
"""Arms in radians; grippers normalized 0 closed .. 1 open (observed: follower finger; action: leader joint)."""

CONVENTION_KEY = "convention"
"""Where a checkpoint's, dataset's or statistics file's JSON records its convention."""

GRIPPER_COLUMNS = tuple(names.ALOHA_JOINT_NAMES.index(f"{side}_gripper") for side in names.ARM_SIDES)
"""Columns of the 14-dim ALOHA vector that hold a gripper (6 and 13)."""

RANGES = ("follower_joint", "follower_finger", "leader_joint", "leader_finger")


class CalibrationError(ValueError):
    """A calibration that cannot convert (bad numbers, unknown preset)."""


class ConventionError(ValueError):
    """Data, a checkpoint or a robot in another convention (or recording none): refused, nothing converted."""


@dataclass(frozen=True)
class Span:
    """Closed and open positions of one gripper quantity (radians or metres)."""

    closed: float
    open: float

    def normalize(self, value):
        return (np.asarray(value, dtype=np.float64) - self.closed) / (self.open - self.closed)

    def denormalize(self, fraction):
        return self.closed + np.asarray(fraction, dtype=np.float64) * (self.open - self.closed)

    @property
    def low(self) -> float:
        return min(self.closed, self.open)

    @property
    def high(self) -> float:
        return max(self.closed, self.open)


@dataclass(frozen=True)
class Calibration:
    """One rig's gripper numbers: follower and leader, gripper joint (rad) and finger position (m)."""

    name: str
    follower_joint: Span
    follower_finger: Span
    leader_joint: Span
    leader_finger: Span
    origin: str = "given as numbers"

    def __post_init__(self):
        for what in RANGES:
            span = getattr(self, what)
            if not (math.isfinite(span.closed) and math.isfinite(span.open)):
                raise CalibrationError(f"calibration {self.name!r}: {what} open/closed must be finite, got {span}")
            if span.open == span.closed:
                raise CalibrationError(f"calibration {self.name!r}: {what} open and closed are both {span.open}")

    # ---- the conversions ---------------------------------------------------------------------
    def observed_gripper(self, follower_finger_m):
        """Follower finger position (m) -> the observed gripper of the convention."""
        return self.follower_finger.normalize(follower_finger_m)

    def action_gripper(self, leader_joint_rad):
        """Leader gripper joint (rad) -> the action gripper of the convention."""
        return self.leader_joint.normalize(leader_joint_rad)

    def follower_gripper_command(self, action_gripper):
        """The convention's action gripper -> the follower's gripper joint goal (rad), as ALOHA's teleop maps it."""
        return self.follower_joint.denormalize(action_gripper)

    def leader_gripper_joint(self, action_gripper):
        """The convention's action gripper -> the leader gripper joint (rad) that expresses it."""
        return self.leader_joint.denormalize(action_gripper)

    # ---- records -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name, "origin": self.origin, **{what: asdict(getattr(self, what)) for what in RANGES}}

    @classmethod
    def from_dict(cls, record: Mapping) -> "Calibration":
        try:
            spans = {what: Span(float(record[what]["closed"]), float(record[what]["open"])) for what in RANGES}
            return cls(str(record["name"]), origin=str(record.get("origin", "")), **spans)
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"not a calibration record ({exc}): {record}") from exc

    def with_overrides(self, **spans: Optional[Sequence[float]]) -> "Calibration":
        """The same calibration with some spans given as [closed, open] (None or empty: keep)."""
        for what, value in spans.items():
            if what not in RANGES:
                raise CalibrationError(f"unknown calibration span {what!r}; expected one of {RANGES}")
            if value is not None and len(value) not in (0, 2):
                raise CalibrationError(f"calibration {what} needs [closed, open], got {list(value)}")
        given = {what: Span(float(v[0]), float(v[1])) for what, v in spans.items() if v is not None and len(v)}
        return replace(self, name=f"{self.name}+overrides", **given) if given else self

    def describe(self) -> str:
        f, lj = self.follower_joint, self.leader_joint
        return (f"{self.name}: follower gripper joint {f.closed:g}..{f.open:g} rad, finger "
                f"{self.follower_finger.closed:g}..{self.follower_finger.open:g} m; leader gripper joint "
                f"{lj.closed:g}..{lj.open:g} rad ({self.origin})")


PRESETS = {
    "aloha2": Calibration(
        "aloha2", Span(0.6197, 1.6214), Span(0.0440, 0.0579), Span(-0.0552, 0.8298), Span(0.0185, 0.0323),
        "ALOHA 2 / the ALOHA ROS 2 stack, Interbotix/aloha aloha/constants.py",
    ),
    "aloha1": Calibration(
        "aloha1", Span(-0.6213, 1.4910), Span(0.01844, 0.0580), Span(-0.6842, 0.3083), Span(0.01244, 0.02417),
        "original ALOHA (ROS 1): tonyzhaozh/aloha aloha_scripts/constants.py",
    ),
}
DEFAULT_CALIBRATION = PRESETS["aloha2"]


def calibration_preset(name: str) -> Calibration:
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise CalibrationError(f"unknown calibration {name!r}; presets: {', '.join(PRESETS)}") from None


# ---- one arm's driver joint states <-> the convention ---------------------------------------
def observed_arm(joint_names: Sequence[str], positions: Sequence[float], calibration: Calibration) -> np.ndarray:
    """One arm's driver JointState (names, positions) -> its 7 observed values (arm rad, gripper normalized).

    Read by name; the gripper comes from `left_finger` (the finger slide the convention observes)."""
    values = _by_name(joint_names, positions, names.ARM_GROUP_JOINTS + names.FINGER_JOINTS[:1], "joint state")
    values[6] = calibration.observed_gripper(values[6])
    return values


def leader_action_arm(joint_names: Sequence[str], positions: Sequence[float], calibration: Calibration) -> np.ndarray:
    """One leader arm's JointState -> its 7 action values (arm rad, gripper = leader joint normalized)."""
    values = _by_name(joint_names, positions, names.ARM_JOINTS, "leader joint state")
    values[6] = calibration.action_gripper(values[6])
    return values


def _by_name(joint_names: Sequence[str], positions: Sequence[float], wanted: Sequence[str], what: str) -> np.ndarray:
    columns = _columns(tuple(joint_names), tuple(wanted))
    missing = [n for n, c in zip(wanted, columns) if c < 0 or c >= len(positions)]
    if missing:
        raise ConventionError(f"{what} lacks {', '.join(missing)} (names: {list(joint_names)})")
    return np.array([positions[c] for c in columns], dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _columns(joint_names: tuple, wanted: tuple) -> tuple:
    """Where each wanted name sits in a message's names (-1: absent); a driver sends the same names at 100 Hz."""
    index = {name: i for i, name in enumerate(joint_names)}
    return tuple(index.get(name, -1) for name in wanted)


def arm_command(action_arm: Sequence[float], calibration: Calibration) -> Tuple[list, float]:
    """7 action values of one arm -> (the 6 `arm` group goals in rad, the gripper joint goal in rad)."""
    values = np.asarray(action_arm, dtype=np.float64)
    if values.shape != (len(names.ARM_JOINTS),):
        raise ConventionError(f"an arm command needs {len(names.ARM_JOINTS)} values, got shape {values.shape}")
    return values[:6].tolist(), float(calibration.follower_gripper_command(values[6]))


GRIPPER_SLACK = 0.25
"""How far past 0 (closed) or 1 (open) a converted gripper may go: a squeeze or an overtravel, not other units."""


def check_gripper_range(values: np.ndarray, what: str, calibration: Calibration) -> None:
    """ConventionError when converted [N, 14] values put a gripper far outside 0..1: the data is in other
    units than `calibration` says (another rig, or already normalized)."""
    grippers = np.asarray(values)[:, list(GRIPPER_COLUMNS)]
    if grippers.size == 0:
        return
    low, high = float(np.min(grippers)), float(np.max(grippers))
    if low < -GRIPPER_SLACK or high > 1 + GRIPPER_SLACK:
        raise ConventionError(
            f"{what}: grippers convert to {low:.2f}..{high:.2f} through calibration {calibration.name!r}, "
            "far outside 0 (closed) .. 1 (open): the recording is in other units (another rig's calibration, "
            "or grippers already normalized); pass the recording rig's --calibration"
        )


# ---- records of the convention ---------------------------------------------------------------
def convention_record(calibration: Optional[Calibration]) -> dict:
    """What a dataset, statistics file or checkpoint records (calibration None: data already in the convention)."""
    return {"name": CONVENTION, "calibration": calibration.to_dict() if calibration is not None else None}


def check_convention(record: Optional[Mapping], what: str) -> dict:
    """The record if it is this convention; else ConventionError naming `what` and what it holds."""
    if not record:
        raise ConventionError(
            f"{what} records no {CONVENTION_KEY!r}: made before conventions were recorded, or by another tool. "
            f"Re-export / refit / retrain it with this suite (convention {CONVENTION!r})"
        )
    name = record.get("name") if isinstance(record, Mapping) else record
    if name != CONVENTION:
        raise ConventionError(f"{what} is in convention {name!r}; this suite speaks {CONVENTION!r} "
                              "(arms in rad, grippers normalized 0 closed .. 1 open)")
    return dict(record)


def recorded_calibration(record: Mapping) -> Optional[Calibration]:
    raw = record.get("calibration")
    return Calibration.from_dict(raw) if raw else None


def calibration_mismatch(a: Mapping, b: Mapping) -> Optional[str]:
    """Why two convention records made from recordings disagree on the calibration (None: they agree or
    either was made from data already in the convention)."""
    first, second = recorded_calibration(a), recorded_calibration(b)
    if first is None or second is None:
        return None
    for what in RANGES:
        x, y = getattr(first, what), getattr(second, what)
        if not (math.isclose(x.closed, y.closed, abs_tol=1e-9) and math.isclose(x.open, y.open, abs_tol=1e-9)):
            return f"calibration {first.name!r} and {second.name!r} differ in {what} ({x} vs {y})"
    return None

