"""Rolling latency statistics and control-tick period bookkeeping."""

from __future__ import annotations

import collections
from typing import Dict, Iterable, Optional

import numpy as np


class RollingStats:
    """The last `maxlen` samples of a quantity, with percentiles on demand."""

    def __init__(self, maxlen: int = 1000):
        self._samples = collections.deque(maxlen=max(1, int(maxlen)))
        self.count = 0

    def add(self, value: float) -> None:
        self._samples.append(float(value))
        self.count += 1

    def __len__(self) -> int:
        return len(self._samples)

    def clear(self) -> None:
        self._samples.clear()
        self.count = 0

    def percentiles(self, qs: Iterable[float] = (50, 99)) -> Dict[str, float]:
        """{'p50': ..., 'p99': ...}; NaN when empty."""
        qs = list(qs)
        if not self._samples:
            return {f"p{q:g}": float("nan") for q in qs}
        values = np.percentile(np.fromiter(self._samples, dtype=np.float64), qs)
        return {f"p{q:g}": float(v) for q, v in zip(qs, values)}

    def max(self) -> float:
        return max(self._samples) if self._samples else float("nan")


class StageLatency:
    """Latency per named stage of a pipeline (a RollingStats each), as flat diagnostics keys."""

    def __init__(self, stages: Iterable[str], maxlen: int = 1000):
        self.stages = {name: RollingStats(maxlen) for name in stages}

    def add(self, stage: str, ms: float) -> None:
        self.stages[stage].add(ms)

    def clear(self) -> None:
        for stats in self.stages.values():
            stats.clear()

    def summary(self, qs: Iterable[float] = (50, 95, 99)) -> Dict[str, float]:
        """{'<stage>_ms_p50': ..., ...} for every stage, in stage order (NaN while a stage has no samples)."""
        qs = list(qs)
        return {f"{stage}_ms_{key}": value for stage, stats in self.stages.items()
                for key, value in stats.percentiles(qs).items()}


class TickMonitor:
    """Measures the interval between control ticks and counts missed ticks.

    A tick is missed when the interval since the previous tick covers one or
    more whole extra periods (interval rounded to periods minus one).
    """

    def __init__(self, period_s: float, window: int = 6000):
        self.period_s = period_s
        self.periods_ms = RollingStats(window)
        self.ticks = 0
        self.missed_ticks = 0
        self._last: Optional[float] = None

    def reset_statistics(self) -> None:
        """Forget periods and missed ticks so far (the tick count and the last tick stay)."""
        self.periods_ms.clear()
        self.missed_ticks = 0

    def on_tick(self, now_monotonic_s: float) -> None:
        self.ticks += 1
        if self._last is not None:
            interval = now_monotonic_s - self._last
            self.periods_ms.add(interval * 1e3)
            self.missed_ticks += max(0, int(round(interval / self.period_s)) - 1)
        self._last = now_monotonic_s

    def summary(self) -> dict:
        stats = self.periods_ms.percentiles((50, 99))
        return {
            "period_ms": {"p50": stats["p50"], "p99": stats["p99"], "max": self.periods_ms.max()},
            "missed_ticks": self.missed_ticks,
        }
