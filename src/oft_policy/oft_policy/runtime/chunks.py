"""Action chunks as plain data, and the checks a chunk must pass before any of it runs.

Times are float seconds on the executor's clock (ROS time, so simulated time
works the same way). A chunk that fails any check is refused whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from oft_policy.runtime.limits import JointLimits


class ChunkRejected(ValueError):
    """A chunk failed validation; nothing from it may be executed."""


@dataclass(frozen=True)
class Chunk:
    """One received chunk. `actions` is the flat row-major array exactly as it arrived."""

    sequence: int
    stamp_s: float
    start_time_s: float
    period_s: float
    joint_names: tuple
    chunk_size: int
    action_dim: int
    actions: np.ndarray
    model_id: str = ""
    inference_ms: float = 0.0

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray,
        joint_names: Sequence[str],
        sequence: int,
        stamp_s: float,
        start_time_s: float,
        period_s: float,
        model_id: str = "",
        inference_ms: float = 0.0,
    ) -> "Chunk":
        rows = np.asarray(rows, dtype=np.float64)
        return cls(
            sequence=sequence,
            stamp_s=stamp_s,
            start_time_s=start_time_s,
            period_s=period_s,
            joint_names=tuple(joint_names),
            chunk_size=int(rows.shape[0]),
            action_dim=int(rows.shape[1]),
            actions=rows.reshape(-1),
            model_id=model_id,
            inference_ms=inference_ms,
        )

    def rows(self) -> np.ndarray:
        """Actions as [chunk_size, action_dim]; only meaningful after validation."""
        return self.actions.reshape(self.chunk_size, self.action_dim)

    def due_times(self) -> np.ndarray:
        return self.start_time_s + self.period_s * np.arange(self.chunk_size)


def chunk_start(rows: np.ndarray, stamp_s: float, ready_s: float, period_s: float,
                inference_delay_steps: int = 0):
    """When a chunk's row 0 is due, and which rows it keeps: (rows, start_time_s).

    With ``inference_delay_steps`` 0 the rows run from when the chunk is ready (`ready_s`, no
    earlier than its observation): row 0 at the first tick after it arrives. With D >= 1 the
    rows are timed from the observation, row k due k + 1 periods after it, and the chunk may
    run only D periods after it (its inference delay): the first D - 1 rows are overdue by
    then and are cut, and what is left starts D periods after the observation.
    """
    rows = np.asarray(rows)
    delay = int(inference_delay_steps)
    if delay < 0:
        raise ValueError(f"inference_delay_steps must be >= 0, got {inference_delay_steps}")
    if delay == 0:
        return rows, max(stamp_s, ready_s)
    if delay > rows.shape[0]:
        raise ValueError(f"an inference delay of {delay} steps leaves nothing of a {rows.shape[0]}-row chunk")
    return rows[delay - 1:], stamp_s + delay * period_s


class PublishedChunks:
    """The newest chunks a policy published, to tell what the executor will run meanwhile: at each
    time, the action of the newest chunk already started by then (the executor's replace rule)."""

    def __init__(self, keep: int = 4):
        self._chunks: list = []
        self._keep = keep

    def add(self, chunk: Chunk) -> None:
        self._chunks = (self._chunks + [chunk])[-self._keep:]

    def clear(self) -> None:
        self._chunks = []

    def action_at(self, time_s: float) -> Optional[np.ndarray]:
        for chunk in reversed(self._chunks):
            tolerance = 0.5 * chunk.period_s
            if chunk.start_time_s - tolerance <= time_s:
                row = int(round((time_s - chunk.start_time_s) / chunk.period_s))
                return chunk.rows()[row] if row < chunk.chunk_size else None
        return None

    def committed(self, stamp_s: float, period_s: float, count: int) -> np.ndarray:
        """[P, dim] actions due 1..count ticks after an observation at `stamp_s`, as far as published
        chunks cover them without a gap (P <= count): what a chunk timed from that observation continues."""
        rows = []
        for k in range(count):
            action = self.action_at(stamp_s + (k + 1) * period_s)
            if action is None:
                break
            rows.append(action)
        dim = self._chunks[-1].action_dim if self._chunks else 0
        return np.array(rows).reshape(len(rows), dim)


def start_lead_limit(inference_delay_steps: int, period_s: float, floor_s: float = 0.2) -> float:
    """The executor's `max_future_s` for a policy with this inference delay: a chunk timed from its
    observation may arrive before its start by up to the delay (a whole delay in lockstep)."""
    return max(floor_s, (int(inference_delay_steps) + 1) * period_s)


@dataclass
class ChunkValidator:
    """Refuses malformed, hostile or out-of-date chunks; remembers the last accepted sequence.

    - joint names must equal the executor's, in order (no unknown, missing or reordered names);
    - dims must agree with the data length; values finite and within the position
      limits up to `limit_margin` (the safety filter clamps what is inside that margin);
    - the observation stamp may be at most `max_age_s` old and `max_future_s` ahead of now;
      `start_time` may not precede the stamp nor lie more than `max_future_s` ahead of now;
    - the sequence must increase.
    """

    joint_names: tuple
    limits: JointLimits
    max_age_s: float = 1.0
    max_future_s: float = 0.2
    limit_margin: float = 0.25
    max_chunk_size: int = 1000
    max_period_s: float = 1.0
    max_horizon_s: float = 5.0
    last_sequence: Optional[int] = None

    def validate(self, chunk: Chunk, now_s: float) -> None:
        """Raise ChunkRejected with the reason, or accept (and record the sequence)."""
        self._check_shape(chunk)
        self._check_values(chunk)
        self._check_times(chunk, now_s)
        if self.last_sequence is not None and chunk.sequence <= self.last_sequence:
            raise ChunkRejected(
                f"sequence {chunk.sequence} does not follow the last accepted {self.last_sequence}"
            )
        self.last_sequence = chunk.sequence

    def _check_shape(self, chunk: Chunk) -> None:
        if tuple(chunk.joint_names) != self.joint_names:
            unknown = sorted(set(chunk.joint_names) - set(self.joint_names))
            if unknown:
                raise ChunkRejected(f"unknown joint names {unknown[:4]}")
            raise ChunkRejected(
                f"joint names missing, repeated or reordered ({len(chunk.joint_names)} given, "
                f"expected the executor's {len(self.joint_names)} in order)"
            )
        if chunk.action_dim != len(self.joint_names):
            raise ChunkRejected(f"action_dim {chunk.action_dim} != {len(self.joint_names)} joints")
        if not 1 <= chunk.chunk_size <= self.max_chunk_size:
            raise ChunkRejected(f"chunk_size {chunk.chunk_size} outside [1, {self.max_chunk_size}]")
        if chunk.actions.shape != (chunk.chunk_size * chunk.action_dim,):
            raise ChunkRejected(
                f"{chunk.actions.size} action values for chunk_size {chunk.chunk_size} x action_dim {chunk.action_dim}"
            )

    def _check_values(self, chunk: Chunk) -> None:
        rows = chunk.rows()
        if not np.all(np.isfinite(rows)):
            raise ChunkRejected("actions contain NaN or Inf")
        excess = self.limits.excess(rows)
        if np.any(excess > self.limit_margin):
            row, col = np.unravel_index(int(np.argmax(excess)), excess.shape)
            raise ChunkRejected(
                f"action {rows[row, col]:.4g} for {self.joint_names[col]} (row {row}) is outside "
                f"[{self.limits.lower[col]:.4g}, {self.limits.upper[col]:.4g}] by more than {self.limit_margin}"
            )

    def _check_times(self, chunk: Chunk, now_s: float) -> None:
        for what, value in (("stamp", chunk.stamp_s), ("start_time", chunk.start_time_s), ("period", chunk.period_s)):
            if not math.isfinite(value):
                raise ChunkRejected(f"{what} is not finite")
        if not 0.0 < chunk.period_s <= self.max_period_s:
            raise ChunkRejected(f"period {chunk.period_s} s outside (0, {self.max_period_s}]")
        age = now_s - chunk.stamp_s
        if age > self.max_age_s:
            raise ChunkRejected(f"stale: observation is {age:.3f} s old (limit {self.max_age_s} s)")
        if -age > self.max_future_s:
            raise ChunkRejected(f"future-dated: observation stamp is {-age:.3f} s ahead of now")
        if chunk.start_time_s < chunk.stamp_s:
            raise ChunkRejected("start_time precedes the observation stamp")
        if chunk.start_time_s - now_s > self.max_future_s:
            raise ChunkRejected(f"start_time is {chunk.start_time_s - now_s:.3f} s ahead of now")
        horizon = chunk.start_time_s + chunk.period_s * (chunk.chunk_size - 1) - chunk.stamp_s
        if horizon > self.max_horizon_s:
            raise ChunkRejected(
                f"horizon: the last action is due {horizon:.3f} s after its observation (limit {self.max_horizon_s} s)"
            )
