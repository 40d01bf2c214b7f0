"""Leader gripper angles -> follower gripper angles, for actions taken from the leader arms.

On a real ALOHA the leader arms (WidowX-style, with a scissor handle) and the
follower arms (vx300s) have gripper joints with different ranges: the same
"half open" is a different angle on each. ALOHA's teleoperation drives the
follower gripper through a linear map: the leader angle as a fraction of the
way from the leader's closed to its open position, then the same fraction
between the follower's closed and open positions. Actions read from leader
bags must go through the same map, or a policy learns to send leader angles
to the follower gripper. Only the two gripper columns change; the six arm
joints of each side are the same joints on both arms.

Published open/close joint positions (radians, the gripper joint of one arm):

- ``interbotix`` (the default): the ALOHA ROS 2 stack, Interbotix/aloha
  ``aloha/constants.py`` (``LEADER_GRIPPER_JOINT_OPEN/CLOSE``,
  ``FOLLOWER_GRIPPER_JOINT_OPEN/CLOSE``): leader 0.8298 / -0.0552, follower
  1.6214 / 0.6197. The suite's topic names (``/leader_left``, ``/follower_left``)
  are this stack's robot names.
- ``act``: the original ROS 1 ALOHA, tonyzhaozh/aloha
  ``aloha_scripts/constants.py`` and tonyzhaozh/act ``constants.py``
  (``MASTER_/PUPPET_GRIPPER_JOINT_OPEN/CLOSE``): leader 0.3083 / -0.6842,
  follower 1.4910 / -0.6213.
- ``identity``: leader and follower grippers already share units (the suite's
  synthetic bags, whose leader topics mirror the followers).

A rig calibrated differently passes its own four numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from oft_policy import names

GRIPPER_JOINT_NAMES = tuple(f"{side}_gripper" for side in names.ARM_SIDES)
GRIPPER_COLUMNS = tuple(names.ALOHA_JOINT_NAMES.index(n) for n in GRIPPER_JOINT_NAMES)
"""Columns of the 14-dim action that hold a gripper (6 and 13)."""


class GripperMapError(ValueError):
    """A gripper map that cannot map (bad numbers or an unknown preset)."""


@dataclass(frozen=True)
class GripperMap:
    """Linear map sending leader open -> follower open and leader close -> follower close."""

    name: str
    leader_open: float
    leader_close: float
    follower_open: float
    follower_close: float
    origin: str = "given as numbers"  # where the four values come from, recorded with the map

    def __post_init__(self):
        for side in ("leader", "follower"):
            opened, closed = getattr(self, f"{side}_open"), getattr(self, f"{side}_close")
            if not (math.isfinite(opened) and math.isfinite(closed)):
                raise GripperMapError(f"gripper map {self.name!r}: {side} open/close must be finite numbers, "
                                      f"got {opened} / {closed}")
            if opened == closed:
                raise GripperMapError(f"gripper map {self.name!r}: {side} open and close are both {opened}; "
                                      "the map needs two distinct positions on each side")

    @property
    def is_identity(self) -> bool:
        return (self.leader_open, self.leader_close) == (self.follower_open, self.follower_close)

    def to_follower(self, leader_angles):
        """Leader gripper angle(s) -> follower angle(s); linear beyond the open/close positions too (no clipping)."""
        fraction_open = (np.asarray(leader_angles, np.float64) - self.leader_close) / (self.leader_open - self.leader_close)
        return self.follower_close + fraction_open * (self.follower_open - self.follower_close)

    def apply(self, leader_actions: np.ndarray) -> np.ndarray:
        """[N, 14] leader joint positions -> actions in follower units (gripper columns mapped, arm joints as given)."""
        actions = np.asarray(leader_actions)
        if actions.ndim != 2 or actions.shape[1] != len(names.ALOHA_JOINT_NAMES):
            raise GripperMapError(f"leader actions have shape {actions.shape}; expected [N, {len(names.ALOHA_JOINT_NAMES)}]")
        if self.is_identity:
            return actions  # untouched, bit for bit: identity exports stay identical to raw ones
        mapped = np.array(actions, dtype=np.float64, copy=True)
        mapped[:, GRIPPER_COLUMNS] = self.to_follower(mapped[:, GRIPPER_COLUMNS])
        return mapped

    def to_dict(self) -> dict:
        """What a dataset or stats file records about the map (JSON-ready)."""
        return {
            "name": self.name, "columns": list(GRIPPER_JOINT_NAMES),
            "leader_open": self.leader_open, "leader_close": self.leader_close,
            "follower_open": self.follower_open, "follower_close": self.follower_close, "origin": self.origin,
        }

    def describe(self) -> str:
        if self.is_identity:
            return f"{self.name} (leader gripper angles kept as recorded)"
        return (f"{self.name} (leader open {self.leader_open:g} / close {self.leader_close:g} -> "
                f"follower open {self.follower_open:g} / close {self.follower_close:g}; {self.origin})")


PRESETS = {
    "interbotix": GripperMap("interbotix", 0.8298, -0.0552, 1.6214, 0.6197,
                             "Interbotix/aloha aloha/constants.py, the ALOHA ROS 2 stack"),
    "act": GripperMap("act", 0.3083, -0.6842, 1.4910, -0.6213,
                      "original ALOHA: tonyzhaozh/aloha aloha_scripts/constants.py, tonyzhaozh/act constants.py"),
    "identity": GripperMap("identity", 1.0, 0.0, 1.0, 0.0, "leader and follower grippers share units"),
}
DEFAULT_GRIPPER_MAP = PRESETS["interbotix"]
IDENTITY_GRIPPER_MAP = PRESETS["identity"]
CUSTOM_FORMAT = "LEADER_OPEN,LEADER_CLOSE,FOLLOWER_OPEN,FOLLOWER_CLOSE"


def parse_gripper_map(text: str) -> GripperMap:
    """A preset name, or four comma-separated numbers in CUSTOM_FORMAT order."""
    key = text.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    fields = [f.strip() for f in text.split(",")]
    try:
        values = [float(f) for f in fields]
    except ValueError:
        values = []
    if len(values) != 4:
        raise GripperMapError(f"gripper map {text!r} is neither a preset ({', '.join(PRESETS)}) "
                              f"nor four numbers {CUSTOM_FORMAT}")
    return GripperMap("custom", *values)


MAPPED_NUMBERS = ("leader_open", "leader_close", "follower_open", "follower_close")


def recorded_map_mismatch(stats_provenance: dict, dataset_provenance: dict):
    """Why a stats file and a dataset disagree on the leader gripper map, or None.

    Only matters when leader-sourced actions went into either one: a policy whose
    normalizer and training targets used different gripper units commands the wrong angles."""
    used_leader = any(
        "leader" in (record.get(key) or {}).values()
        for record, key in ((stats_provenance, "action_source_by_bag"), (dataset_provenance, "action_source_by_recording"))
    )
    fitted, exported = stats_provenance.get("leader_gripper_map"), dataset_provenance.get("leader_gripper_map")
    if not used_leader or fitted is None or exported is None:
        return None
    if all(math.isclose(fitted[k], exported[k], abs_tol=1e-9) for k in MAPPED_NUMBERS):
        return None
    return (f"the normalizer was fitted with leader gripper map {fitted['name']!r} and the dataset exported "
            f"with {exported['name']!r}; fit and export with the same --leader-gripper-map")
