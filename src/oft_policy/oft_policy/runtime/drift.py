"""ActionDriftMonitor: does the arm follow what the executor commands?

Each tick compares the command sent `delay_ticks` ago (the arm needs a few
ticks to get there) with the measured joint state. Both are put in the
normalized action space of the checkpoint: the error of a joint is
|commanded - measured| divided by that joint's action range (the stats'
min/max or q01/q99 bounds), so 0.05 means 5 % of the range the policy was
trained on. The mean over the watched joints is smoothed by a rolling mean
(the trend), and the trend is compared with the WARN and CRITICAL thresholds.

Grippers are not watched by default: a gripper closed on an object is held
open by it, so its tracking error while grasping is the grip, not drift (in
the scripted transfer-cube demos it alone reaches a trend of 0.12).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from enum import IntEnum
from typing import Optional, Sequence

import numpy as np

from oft_policy.normalization import NormalizationStats
from oft_policy.names import is_gripper
from oft_policy.runtime.limits import JointLimits


class DriftLevel(IntEnum):
    OK = 0
    WARN = 1
    CRITICAL = 2


@dataclass(frozen=True)
class DriftSample:
    level: DriftLevel
    mean_drift: float
    trend: float
    per_dim_error: np.ndarray
    worst_dim: int
    step: int


MIN_SCALE_FRACTION_OF_LIMITS = 0.1


def drift_scale_from_stats(stats: NormalizationStats, joint_names: Sequence[str], limits: JointLimits) -> np.ndarray:
    """Per-joint action range from checkpoint stats, floored at a tenth of the joint's limit range.

    The floor matters for joints a task barely moves (0.02 rad in transfer-cube):
    scaled by their own tiny range, ordinary tracking error would read as CRITICAL drift.
    """
    if tuple(stats.joint_names) != tuple(joint_names):
        raise ValueError(
            f"normalization stats name joints {list(stats.joint_names)}, the executor runs {list(joint_names)}"
        )
    low, high = stats.action_bounds
    span = np.asarray(high - low, dtype=np.float64)
    return np.maximum(span, MIN_SCALE_FRACTION_OF_LIMITS * np.asarray(limits.span, dtype=np.float64))


def watched_joint_mask(joint_names: Sequence[str], watched: Optional[Sequence[str]] = None) -> np.ndarray:
    """Which joints the drift monitor averages: the `watched` names, or every joint but the grippers."""
    if watched is None:
        return np.array([not is_gripper(name) for name in joint_names])
    watched = set(watched)
    unknown = sorted(watched - set(joint_names))
    if unknown:
        raise ValueError(f"drift joints {unknown} are not among the executor's joint names")
    return np.array([name in watched for name in joint_names])


class ActionDriftMonitor:
    def __init__(
        self,
        scale: np.ndarray,
        warn_threshold: float = 0.05,
        critical_threshold: float = 0.15,
        window: int = 10,
        delay_ticks: int = 3,
        watched: Optional[np.ndarray] = None,
    ):
        scale = np.asarray(scale, dtype=np.float64)
        if scale.ndim != 1 or np.any(~np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError("drift scale must be a 1-D array of positive finite ranges")
        watched = np.ones(scale.shape, dtype=bool) if watched is None else np.asarray(watched, dtype=bool)
        if watched.shape != scale.shape or not watched.any():
            raise ValueError("watched must mark at least one of the scale's joints")
        if not 0 < warn_threshold <= critical_threshold:
            raise ValueError(f"need 0 < warn ({warn_threshold}) <= critical ({critical_threshold})")
        if window < 1 or delay_ticks < 0:
            raise ValueError("window must be >= 1 and delay_ticks >= 0")
        self.scale = scale
        self.watched = watched
        self.warn_threshold = warn_threshold
        self.critical_threshold = critical_threshold
        self.delay_ticks = delay_ticks
        self._commands = collections.deque(maxlen=delay_ticks + 1)
        self._recent = collections.deque(maxlen=window)
        self.step = 0

    def reset(self) -> None:
        self._commands.clear()
        self._recent.clear()
        self.step = 0

    def record_command(self, command: np.ndarray) -> None:
        self._commands.append(np.asarray(command, dtype=np.float64))

    def update(self, measured: np.ndarray) -> Optional[DriftSample]:
        """Evaluate one tick; None until a command from `delay_ticks` ago exists."""
        if len(self._commands) <= self.delay_ticks:
            return None
        commanded = self._commands[0]
        error = np.abs(commanded - np.asarray(measured, dtype=np.float64)) / self.scale
        mean = float(error[self.watched].mean())
        self._recent.append(mean)
        trend = float(np.mean(self._recent))
        self.step += 1
        if trend > self.critical_threshold:
            level = DriftLevel.CRITICAL
        elif trend > self.warn_threshold:
            level = DriftLevel.WARN
        else:
            level = DriftLevel.OK
        worst = int(np.argmax(np.where(self.watched, error, -1.0)))
        return DriftSample(level, mean, trend, error, worst, self.step)
