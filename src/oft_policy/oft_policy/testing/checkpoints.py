"""Random tiny checkpoints for tests, benchmarks and demos (untrained: they exercise the interfaces, not a task)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from oft_policy import names
from oft_policy.calibration import DEFAULT_CALIBRATION, convention_record
from oft_policy.checkpoint import save_checkpoint
from oft_policy.model.config import OFTConfig
from oft_policy.normalization import NormalizationStats


def random_stats(joint_names: Sequence[str], seed: int = 0, action_scheme: str = "min_max") -> NormalizationStats:
    """Plausible stats in the convention: joint angles in radians (per-joint offsets, 0.1-0.5 rad spread),
    grippers inside 0 (closed) .. 1 (open)."""
    rng = np.random.default_rng(seed)
    dim = len(joint_names)
    gripper = np.array([names.is_gripper(name) for name in joint_names])
    centre = np.where(gripper, rng.uniform(0.4, 0.6, size=dim), rng.uniform(-0.5, 0.5, size=dim))
    spread = np.where(gripper, 0.08, rng.uniform(0.1, 0.5, size=dim))
    proprio = centre + spread * rng.standard_normal((512, dim))
    actions = proprio + 0.02 * rng.standard_normal((512, dim))
    return NormalizationStats.fit(proprio, actions, joint_names, action_scheme=action_scheme,
                                  convention=convention_record(DEFAULT_CALIBRATION))


def make_tiny_checkpoint(out_dir, *, joint_names: Sequence[str] = names.ALOHA_JOINT_NAMES,
                         camera_names: Sequence[str] = names.CAMERA_NAMES, chunk_size: int = 25,
                         control_period_s: float = 0.02, stats: Optional[NormalizationStats] = None,
                         decoding: str = "parallel", seed: int = 0, overwrite: bool = False) -> Path:
    """A randomly initialized tiny-backbone checkpoint (random plausible stats when ``stats`` is None)."""
    from oft_policy.model.build import build_model, build_tokenizer

    config = OFTConfig(
        backbone="tiny", decoding=decoding, chunk_size=chunk_size, action_dim=len(joint_names),
        joint_names=tuple(joint_names), camera_names=tuple(camera_names), control_period_s=control_period_s,
    )
    stats = stats if stats is not None else random_stats(joint_names, seed=seed)
    model = build_model(config, seed=seed)
    return save_checkpoint(out_dir, model, config, stats, build_tokenizer(config),
                           extra={"note": "random tiny checkpoint (untrained)", "seed": seed}, overwrite=overwrite)
