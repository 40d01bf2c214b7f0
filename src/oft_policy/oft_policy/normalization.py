"""Proprio and action normalization: one stats object for training and inference.

Proprio is z-scored (mean/std fitted on the deployment robot's own telemetry,
applied before the model, never after). Actions are mapped to [-1, 1] and
clipped, with the bounds chosen by a named scheme:

- ``min_max``: the recorded minimum and maximum (openvla-oft's choice for
  ALOHA, where q01/q99 clipping would block joint angles the task needs);
- ``q01_q99``: the 1st and 99th percentiles (OpenVLA, LIBERO).

Dimensions whose bounds are equal map to 0 (and back to that bound).
The object serializes to one JSON file that travels inside every checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

LOG = logging.getLogger(__name__)

ACTION_SCHEMES = ("min_max", "q01_q99")
FORMAT_VERSION = 1
STATS_FILENAME = "normalization.json"


class StatsError(ValueError):
    """Normalization statistics are missing, malformed or do not fit the data."""


@dataclass(frozen=True)
class FeatureStats:
    """Summary statistics of one feature (proprio or action), one value per dimension."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    q01: np.ndarray
    q99: np.ndarray
    count: int

    @classmethod
    def fit(cls, samples: np.ndarray) -> "FeatureStats":
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] == 0:
            raise StatsError(f"need a non-empty [N, D] array to fit statistics, got shape {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise StatsError("samples contain NaN or Inf; clean the recording before fitting")
        return cls(
            mean=samples.mean(axis=0),
            std=samples.std(axis=0),
            min=samples.min(axis=0),
            max=samples.max(axis=0),
            q01=np.quantile(samples, 0.01, axis=0),
            q99=np.quantile(samples, 0.99, axis=0),
            count=int(samples.shape[0]),
        )

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def to_dict(self) -> dict:
        out = {key: getattr(self, key).astype(float).tolist() for key in ("mean", "std", "min", "max", "q01", "q99")}
        out["count"] = self.count
        return out

    @classmethod
    def from_dict(cls, data: dict, name: str) -> "FeatureStats":
        try:
            arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("mean", "std", "min", "max", "q01", "q99")}
            count = int(data["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StatsError(f"{name} statistics are incomplete or malformed: {exc}") from exc
        dims = {key: value.shape for key, value in arrays.items()}
        if len(set(dims.values())) != 1 or next(iter(dims.values())) == () or len(next(iter(dims.values()))) != 1:
            raise StatsError(f"{name} statistics must be 1-D arrays of one length, got shapes {dims}")
        if not all(np.all(np.isfinite(v)) for v in arrays.values()):
            raise StatsError(f"{name} statistics contain NaN or Inf")
        return cls(count=count, **arrays)


@dataclass(frozen=True)
class NormalizationStats:
    """Proprio and action statistics of one robot, with the action scheme named.

    ``joint_names`` names the dimensions of both proprio and actions (they share
    the joint order). Use :meth:`fit` on recorded telemetry, :meth:`save` /
    :meth:`load` for the JSON file, and the normalize/denormalize methods.
    """

    joint_names: tuple
    proprio: FeatureStats
    action: FeatureStats
    action_scheme: str = "min_max"
    eps: float = 1e-8
    zero_variance_proprio: tuple = field(default=())
    convention: Optional[dict] = None  # oft_policy.calibration.convention_record of the data it was fitted on

    def __post_init__(self):
        if self.action_scheme not in ACTION_SCHEMES:
            raise StatsError(f"unknown action scheme {self.action_scheme!r}; expected one of {ACTION_SCHEMES}")
        dim = len(self.joint_names)
        if self.proprio.dim != dim or self.action.dim != dim:
            raise StatsError(
                f"stats dims disagree: {dim} joint names, proprio {self.proprio.dim}, action {self.action.dim}"
            )
        self._check_scales()

    def _check_scales(self) -> None:
        """Scales a fit can produce: no negative std, no inverted bounds, and a zero proprio std only where
        the fit marked the dim zero-variance. Anything else is a damaged or edited file."""
        def joints(mask) -> str:
            return ", ".join(n for n, bad in zip(self.joint_names, mask) if bad)

        for name, feature in (("proprio", self.proprio), ("action", self.action)):
            if np.any(feature.std < 0):
                raise StatsError(f"{name} std is negative for {joints(feature.std < 0)}")
            inverted = (feature.max < feature.min) | (feature.q99 < feature.q01)
            if np.any(inverted):
                raise StatsError(f"{name} bounds are inverted (max below min) for {joints(inverted)}")
        unmarked = (self.proprio.std < self.eps) & ~np.isin(self.joint_names, self.zero_variance_proprio)
        if np.any(unmarked):
            raise StatsError(f"proprio std is zero for {joints(unmarked)}, which the fit did not mark zero-variance")

    # ---- fitting -------------------------------------------------------
    @classmethod
    def fit(
        cls,
        proprio: np.ndarray,
        actions: np.ndarray,
        joint_names: Sequence[str],
        action_scheme: str = "min_max",
        eps: float = 1e-8,
        convention: Optional[dict] = None,
    ) -> "NormalizationStats":
        """Fit from [N, D] proprio samples and [M, D] action samples (in `convention`)."""
        proprio_stats = FeatureStats.fit(proprio)
        action_stats = FeatureStats.fit(actions)
        zero_var = tuple(
            name for name, std in zip(joint_names, proprio_stats.std) if std < eps
        )
        if zero_var:
            LOG.warning("proprio dims with zero variance use std 1: %s", ", ".join(zero_var))
        return cls(
            joint_names=tuple(joint_names),
            proprio=proprio_stats,
            action=action_stats,
            action_scheme=action_scheme,
            eps=eps,
            zero_variance_proprio=zero_var,
            convention=convention,
        )

    @property
    def dim(self) -> int:
        return len(self.joint_names)

    # ---- proprio: z-score ---------------------------------------------
    @property
    def proprio_std(self) -> np.ndarray:
        """Std with zero-variance dims replaced by 1, so they pass through centred."""
        std = self.proprio.std.copy()
        std[std < self.eps] = 1.0
        return std

    def normalize_proprio(self, proprio: np.ndarray) -> np.ndarray:
        proprio = self._check_dims(proprio, "proprio")
        return ((proprio - self.proprio.mean) / self.proprio_std).astype(np.float32)

    def denormalize_proprio(self, normalized: np.ndarray) -> np.ndarray:
        normalized = self._check_dims(normalized, "proprio")
        return (normalized * self.proprio_std + self.proprio.mean).astype(np.float32)

    # ---- actions: [-1, 1] by bounds ------------------------------------
    @property
    def action_bounds(self) -> tuple:
        """(low, high) per dimension under the named scheme."""
        if self.action_scheme == "min_max":
            return self.action.min, self.action.max
        return self.action.q01, self.action.q99

    def normalize_action(self, actions: np.ndarray) -> np.ndarray:
        actions = self._check_dims(actions, "action")
        low, high = self.action_bounds
        span = high - low
        degenerate = span < self.eps
        safe_span = np.where(degenerate, 1.0, span)
        scaled = 2.0 * (actions - low) / safe_span - 1.0
        scaled = np.where(degenerate, 0.0, scaled)
        return np.clip(scaled, -1.0, 1.0).astype(np.float32)

    def denormalize_action(self, normalized: np.ndarray) -> np.ndarray:
        normalized = self._check_dims(normalized, "action")
        low, high = self.action_bounds
        clipped = np.clip(normalized, -1.0, 1.0)
        return (0.5 * (clipped + 1.0) * (high - low) + low).astype(np.float32)

    def _check_dims(self, values: np.ndarray, what: str) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if values.shape[-1:] != (self.dim,):
            raise StatsError(f"{what} has {values.shape[-1:] or 'no'} dims, stats have {self.dim}")
        return values

    # ---- serialization -------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "joint_names": list(self.joint_names),
            "action_scheme": self.action_scheme,
            "eps": self.eps,
            "zero_variance_proprio": list(self.zero_variance_proprio),
            "proprio": self.proprio.to_dict(),
            "action": self.action.to_dict(),
            **({"convention": self.convention} if self.convention is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "NormalizationStats":
        if not isinstance(data, dict):
            raise StatsError("normalization stats must be a JSON object")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise StatsError(f"unsupported normalization stats format_version {version!r} (expected {FORMAT_VERSION})")
        missing = [k for k in ("joint_names", "action_scheme", "proprio", "action") if k not in data]
        if missing:
            raise StatsError(f"normalization stats lack {', '.join(missing)}")
        eps = float(data.get("eps", 1e-8))
        if not math.isfinite(eps) or eps <= 0:
            raise StatsError(f"eps must be a positive number, got {eps}")
        return cls(
            joint_names=tuple(str(n) for n in data["joint_names"]),
            proprio=FeatureStats.from_dict(data["proprio"], "proprio"),
            action=FeatureStats.from_dict(data["action"], "action"),
            action_scheme=str(data["action_scheme"]),
            eps=eps,
            zero_variance_proprio=tuple(data.get("zero_variance_proprio", ())),
            convention=data.get("convention"),
        )

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "NormalizationStats":
        path = Path(path)
        if not path.is_file():
            raise StatsError(f"normalization stats not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StatsError(f"normalization stats {path} are not valid JSON: {exc}") from exc
        return cls.from_dict(data)
