"""Fit the normalizer on the deployment robot's own recordings (bags), in the policy's convention.

Proprio: the follower joint states read through the rig's calibration (gripper = finger
position normalized). Actions: the leader joint states (gripper = leader gripper joint
normalized), or a commanded-action topic already in the convention. The statistics record
the convention and calibration (oft_policy.calibration), so training and the runtime can
refuse a mismatch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from oft_policy import names
from oft_policy.calibration import DEFAULT_CALIBRATION, Calibration, check_gripper_range, convention_record
from oft_policy.normalization import NormalizationStats
from tqdm import tqdm

from oft_training.bagread import (
    BagDecoder, BagError, DecodeIssues, follower_arm, joint_samples, leader_arm, open_bag, read_float_series,
)
from oft_training.recording import COMMANDED_ACTION_TOPIC

ACTION_SOURCES = ("auto", "leader", "commanded")


@dataclass
class FitResult:
    stats: NormalizationStats
    issues: DecodeIssues
    proprio_samples: int
    action_samples: int
    action_source_by_bag: dict
    calibration: Calibration = DEFAULT_CALIBRATION

    @property
    def zero_range_actions(self) -> tuple:
        low, high = self.stats.action_bounds
        return tuple(n for n, lo, hi in zip(self.stats.joint_names, low, high) if hi - lo < self.stats.eps)

    def provenance(self) -> dict:
        """How the actions were made: per bag its source."""
        return {"action_source_by_bag": dict(self.action_source_by_bag)}

    def save(self, path) -> Path:
        """The stats JSON (NormalizationStats.load reads it) plus a ``provenance`` entry, written atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({**self.stats.to_dict(), "provenance": self.provenance()}, indent=2) + "\n")
        tmp.replace(path)
        return path


def resolve_action_source(topics: dict, source: str, commanded_topic: str = COMMANDED_ACTION_TOPIC) -> str:
    """'commanded' when asked or (auto) when the bag has the commanded-action topic, else 'leader'."""
    if source not in ACTION_SOURCES:
        raise BagError(f"unknown action source {source!r}; expected one of {ACTION_SOURCES}")
    if source == "auto":
        return "commanded" if commanded_topic in topics else "leader"
    return source


def bag_actions(
    decoder: BagDecoder, source: str, calibration: Calibration, commanded_topic: str = COMMANDED_ACTION_TOPIC,
) -> np.ndarray:
    """Commanded actions as published (already in the convention); leader joint states through the calibration."""
    if source == "commanded":
        series = read_float_series(decoder, commanded_topic)
        if len(series) == 0:
            raise BagError(f"bag {decoder.reader.path} has no decodable messages on {commanded_topic}")
        return series.values
    return joint_samples(decoder, *names.LEADER_JOINT_STATE_TOPICS, leader_arm(calibration))


def fit_from_bags(
    bags: Sequence,
    action_source: str = "auto",
    action_scheme: str = "min_max",
    on_corrupt: str = "fail",
    commanded_topic: str = COMMANDED_ACTION_TOPIC,
    progress: bool = True,
    calibration: Calibration = DEFAULT_CALIBRATION,
) -> FitResult:
    """Proprio = follower joint states, actions = leader joint states or the commanded action, in the convention."""
    proprio, actions, issues, sources = [], [], DecodeIssues(), {}
    for bag in tqdm(bags, desc="fitting", unit="bag", disable=not progress):
        reader = open_bag(bag)
        try:
            topics = {c.topic: c.msgtype for c in reader.connections}
            source = resolve_action_source(topics, action_source, commanded_topic)
            needed = list(names.FOLLOWER_JOINT_STATE_TOPICS)
            needed += [commanded_topic] if source == "commanded" else list(names.LEADER_JOINT_STATE_TOPICS)
            missing = [t for t in needed if t not in topics]
            if missing:
                raise BagError(f"bag {bag} has no topic {', '.join(missing)}; topics in the bag: {', '.join(sorted(topics))}")
            decoder = BagDecoder(reader, on_corrupt)
            proprio.append(joint_samples(decoder, *names.FOLLOWER_JOINT_STATE_TOPICS, follower_arm(calibration)))
            actions.append(bag_actions(decoder, source, calibration, commanded_topic))
            check_gripper_range(proprio[-1], f"bag {bag} follower joint states", calibration)
            check_gripper_range(actions[-1], f"bag {bag} actions ({source})", calibration)
            issues.merge(decoder.issues)
            sources[str(bag)] = source
        finally:
            reader.close()
    proprio_all, actions_all = np.concatenate(proprio), np.concatenate(actions)
    stats = NormalizationStats.fit(proprio_all, actions_all, names.ALOHA_JOINT_NAMES, action_scheme=action_scheme,
                                   convention=convention_record(calibration))
    return FitResult(stats, issues, int(proprio_all.shape[0]), int(actions_all.shape[0]), sources, calibration)
