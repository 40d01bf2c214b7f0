"""FIFO of time-stamped actions built from validated chunks.

Each action is due at `start_time + t * period`. A tick at time `now` executes
the latest action due within half a control period of `now`; anything due
earlier is dropped, never replayed late. A new chunk takes over the queue from
its `start_time` on, either replacing the queued tail or blending the steps
both chunks cover (weight on the new chunk), as LeRobot's async inference does.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from oft_policy.runtime.chunks import Chunk

CHUNK_POLICIES = ("replace", "blend")


@dataclass
class QueuedAction:
    due_s: float
    action: np.ndarray
    sequence: int
    stamp_s: float  # observation time of the chunk it came from


class ActionQueue:
    def __init__(self, control_period_s: float, policy: str = "replace", blend_weight: float = 0.5):
        if policy not in CHUNK_POLICIES:
            raise ValueError(f"unknown chunk policy {policy!r}; expected one of {CHUNK_POLICIES}")
        if not 0.0 <= blend_weight <= 1.0:
            raise ValueError(f"blend weight must lie in [0, 1], got {blend_weight}")
        if not control_period_s > 0:
            raise ValueError(f"control period must be positive, got {control_period_s}")
        self.tolerance_s = 0.5 * control_period_s
        self.policy = policy
        self.blend_weight = blend_weight
        self._items: List[QueuedAction] = []
        self.dropped = 0
        self.last_dropped_sequence: Optional[int] = None  # the chunk the newest dropped action came from

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def head_sequence(self) -> Optional[int]:
        """The chunk the next queued action comes from, or None if the queue is empty."""
        return self._items[0].sequence if self._items else None

    def oldest_stamp(self) -> Optional[float]:
        return min((item.stamp_s for item in self._items), default=None)

    def insert(self, chunk: Chunk) -> None:
        """Merge a validated chunk into the queue under the configured policy."""
        new = [
            QueuedAction(float(due), row.copy(), chunk.sequence, chunk.stamp_s)
            for due, row in zip(chunk.due_times(), chunk.rows())
        ]
        cut = chunk.start_time_s - self.tolerance_s
        keep = bisect.bisect_left([item.due_s for item in self._items], cut)
        head, tail = self._items[:keep], self._items[keep:]
        if self.policy == "blend":
            self._blend_into(new, tail)
        self._items = head + new

    def _blend_into(self, new: List[QueuedAction], old_tail: List[QueuedAction]) -> None:
        """Average each new step with the old step due at the same tick, if any."""
        old_dues = np.array([item.due_s for item in old_tail])
        if old_dues.size == 0:
            return
        w = self.blend_weight
        for item in new:
            nearest = int(np.argmin(np.abs(old_dues - item.due_s)))
            if abs(old_dues[nearest] - item.due_s) <= self.tolerance_s:
                item.action = w * item.action + (1.0 - w) * old_tail[nearest].action

    def pop_due(self, now_s: float) -> Optional[QueuedAction]:
        """The action for the tick at `now_s`, or None if none is due; drops overdue ones."""
        chosen = None
        while self._items and self._items[0].due_s <= now_s + self.tolerance_s:
            if chosen is not None:
                self._drop(chosen)
            chosen = self._items.pop(0)
        if chosen is not None and chosen.due_s < now_s - self.tolerance_s:
            self._drop(chosen)  # its tick has passed: never executed late
            return None
        return chosen

    def _drop(self, item: QueuedAction) -> None:
        self.dropped += 1
        self.last_dropped_sequence = item.sequence
