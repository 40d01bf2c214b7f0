"""What a training run reads before it writes anything: the model config from the config's model section and
the dataset's names, the train/validation split, and the normalizer, each checked against the dataset's
convention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from oft_policy.calibration import (
    CONVENTION_KEY, ConventionError, calibration_mismatch, check_convention, convention_record,
)
from oft_policy.model import OFTConfig
from oft_policy.normalization import NormalizationStats

from oft_training.dataset import EpisodeTable
from oft_training.lerobot_format import image_key
from oft_training.train_config import TrainConfigError


def build_oft_config(config: dict, table: EpisodeTable) -> OFTConfig:
    """The model section (OFTConfig's own keys) with the dataset's cameras, joint names and fps."""
    model = dict(config["model"])
    if model["action_dim"] != table.action_dim:
        raise TrainConfigError(
            f"dataset {table.root} has action_dim {table.action_dim} but config model.action_dim is {model['action_dim']}"
        )
    cameras = tuple(model.pop("camera_names") or table.cameras)
    missing = [c for c in cameras if c not in table.cameras]
    if missing:
        raise TrainConfigError(f"dataset {table.root} has no camera {', '.join(missing)} (has {', '.join(table.cameras)})")
    joint_names = table.joint_names if len(table.joint_names) == table.action_dim else tuple(
        f"joint_{i}" for i in range(table.action_dim))
    return OFTConfig(**model, camera_names=cameras, joint_names=joint_names, control_period_s=1.0 / table.fps,
                     extra={"dataset": str(table.root), "camera_shapes": camera_shapes(table, cameras)})


def camera_shapes(table: EpisodeTable, cameras) -> dict:
    """[height, width] each camera was recorded at, so an evaluation can render the same."""
    features = table.info["features"]
    return {cam: list(features[image_key(cam)]["shape"][:2]) for cam in cameras}


def split_episodes(table: EpisodeTable, val_episodes: int) -> tuple:
    episodes = sorted(int(e) for e in table.episodes.index)
    if val_episodes <= 0:
        return episodes, episodes
    if val_episodes >= len(episodes):
        raise TrainConfigError(
            f"data.val_episodes={val_episodes} leaves no training episode (dataset has {len(episodes)}); "
            "use data.val_episodes=0 to validate on the training episodes"
        )
    return episodes[:-val_episodes], episodes[-val_episodes:]


def dataset_convention(dataset_root: Path) -> dict:
    """The convention a dataset records (meta/oft_export.json); a dataset without that file (e.g. one
    of LeRobot's ALOHA datasets) is taken to be in the ALOHA dataset convention it was published in."""
    from oft_training.exporter import PROVENANCE_PATH

    provenance = Path(dataset_root) / PROVENANCE_PATH
    if not provenance.is_file():
        return convention_record(None)
    record = json.loads(provenance.read_text()).get(CONVENTION_KEY)
    try:
        return check_convention(record, f"dataset {dataset_root}")
    except ConventionError as exc:
        raise TrainConfigError(str(exc)) from exc


def check_stats_convention(stats: NormalizationStats, stats_path, dataset: dict, dataset_root: Path) -> None:
    """Refuse a normalizer in another convention than the dataset, or fitted with another calibration."""
    try:
        fitted = check_convention(stats.convention, f"normalizer {stats_path}")
    except ConventionError as exc:
        raise TrainConfigError(str(exc)) from exc
    reason = calibration_mismatch(fitted, dataset)
    if reason:
        raise TrainConfigError(f"normalizer {stats_path} and dataset {dataset_root}: {reason}; "
                               "fit and export with the same --calibration")


def load_stats(config: dict, table: EpisodeTable, train_episodes, joint_names) -> NormalizationStats:
    path = config["data"]["stats_path"]
    convention = dataset_convention(table.root)
    if path:
        stats = NormalizationStats.load(path)
        if stats.dim != table.action_dim:
            raise TrainConfigError(f"stats {path} have {stats.dim} dims, the dataset {table.action_dim}")
        check_stats_convention(stats, path, convention, table.root)
        return stats
    rows = np.concatenate([np.arange(*table.episode_range(e)) for e in train_episodes])
    return NormalizationStats.fit(table.state[rows], table.action[rows], joint_names, config["data"]["action_scheme"],
                                  convention=convention)
