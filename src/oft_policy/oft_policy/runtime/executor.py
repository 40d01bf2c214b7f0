"""ExecutorCore: everything the executor node decides, without ROS.

Per control tick it (1) checks drift of the arm against earlier commands and
halts on CRITICAL, (2) takes the action due now from the queue, (3) passes it
through the safety filter starting from the last command, and (4) reports its
state. The first command ever sent (and the first after a resume) equals the
measured position, so the arm never jumps; it is sent from the first tick after a
chunk is queued, even if that chunk's first action is due later. An empty queue holds the last
command; nothing is ever extrapolated. A chunk all of whose actions are overdue
by the first tick after it arrived (it came late, or the ticks stalled for longer
than it lasts) expires unexecuted: it is counted and, if nothing was ever
commanded, the IDLE reason says so. It never commands without feedback: once the
newest joint state is older than `feedback_timeout_s`, it sends nothing (IDLE, and
says why) until states return, and then starts again from the measured position.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Optional, Sequence

import numpy as np

from oft_policy.runtime.action_queue import ActionQueue
from oft_policy.runtime.chunks import Chunk, ChunkRejected, ChunkValidator
from oft_policy.runtime.drift import ActionDriftMonitor, DriftLevel, DriftSample
from oft_policy.runtime.latency import RollingStats
from oft_policy.runtime.limits import SafetyFilter


class ExecutorState(IntEnum):
    """Same values as the constants of oft_msgs/ExecutorStatus."""

    IDLE = 0
    RUNNING = 1
    HOLDING = 2
    HALTED = 3


@dataclass(frozen=True)
class TickResult:
    command: Optional[np.ndarray]  # None: send nothing this tick
    state: ExecutorState
    drift: Optional[DriftSample]
    halted_now: bool = False
    expired_now: bool = False  # this tick dropped the rest of a chunk none of whose actions ever ran


class ExecutorCore:
    def __init__(
        self,
        joint_names: Sequence[str],
        safety: SafetyFilter,
        validator: ChunkValidator,
        queue: ActionQueue,
        drift_monitor: ActionDriftMonitor,
        latency_window: int = 1000,
        feedback_timeout_s: float = 0.0,
    ):
        if feedback_timeout_s < 0:
            raise ValueError(f"feedback_timeout_s must be >= 0 (0: no timeout), got {feedback_timeout_s}")
        self.joint_names = tuple(joint_names)
        self.feedback_timeout_s = float(feedback_timeout_s)
        self.safety = safety
        self.validator = validator
        self.queue = queue
        self.drift_monitor = drift_monitor
        dim = len(self.joint_names)
        self.measured = np.full(dim, np.nan)
        self._measured_at = np.full(dim, -np.inf)  # when each joint was last measured (tick clock)
        self.feedback_lost = ""  # why nothing is commanded for want of joint states; empty: they are fresh
        self.last_command: Optional[np.ndarray] = None
        self.state = ExecutorState.IDLE
        self.reason = "no chunk received yet"
        self.accepted_chunks = 0
        self.rejected_chunks = 0
        self.last_rejection = ""
        self.expired_chunks = 0
        self.last_expiry = ""
        self.last_drift: Optional[DriftSample] = None
        self.blocked = ""  # why nothing may be sent (e.g. the robot is not set up); empty: free to run
        self._last_first_used_sequence = -1
        self._last_expired_sequence = -1
        self.obs_to_command_ms = RollingStats(latency_window)  # observation stamp -> the chunk's first command
        self.obs_to_accept_ms = RollingStats(latency_window)  # observation stamp -> the chunk accepted

    # ---- inputs ----------------------------------------------------------
    def set_measured(self, indices: Sequence[int], values: Sequence[float], now_s: Optional[float] = None) -> None:
        """Update measured joint positions received at ``now_s`` (non-finite values are ignored); ``now_s``
        (on the tick clock) is needed when states have a timeout."""
        if now_s is None and self.feedback_timeout_s > 0:
            raise ValueError("set_measured needs the receive time when feedback_timeout_s is set")
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        columns = np.asarray(indices)[finite]
        self.measured[columns] = values[finite]
        if now_s is not None:
            self._measured_at[columns] = now_s

    def _feedback_problem(self, now_s: float) -> str:
        if self.feedback_timeout_s <= 0 or not self.has_measurement:
            return ""
        age = now_s - float(self._measured_at.min())
        if age <= self.feedback_timeout_s:
            return ""
        return (f"no joint states for {age:.3f} s (limit {self.feedback_timeout_s} s): "
                "sending nothing until they return")

    @property
    def has_measurement(self) -> bool:
        return bool(np.all(np.isfinite(self.measured)))

    def submit_chunk(self, chunk: Chunk, now_s: float) -> None:
        """Validate and queue a chunk; raises ChunkRejected (counted) and changes nothing if bad."""
        try:
            self.validator.validate(chunk, now_s)
        except ChunkRejected as exc:
            self.rejected_chunks += 1
            self.last_rejection = str(exc)
            raise
        self.accepted_chunks += 1
        self.obs_to_accept_ms.add((now_s - chunk.stamp_s) * 1e3)
        if self.state != ExecutorState.HALTED and not self.blocked:
            self.queue.insert(chunk)

    def block(self, reason: str, state: "ExecutorState" = None) -> None:
        """Send nothing until unblock(): the queue is dropped and the reason reported (state IDLE, or as given)."""
        self.blocked = reason
        self.queue.clear()
        self._set_state(state if state is not None else ExecutorState.IDLE, reason)

    def unblock(self) -> None:
        """Free to run again: the next command starts from the measured position."""
        if not self.blocked:
            return
        self.blocked = ""
        self.last_command = None
        self.drift_monitor.reset()
        self._set_state(ExecutorState.IDLE, self._idle_reason())

    def resume(self) -> tuple:
        """Re-arm after a halt: hold the measured position and clear the drift history."""
        if self.blocked:
            return False, f"cannot resume: {self.blocked}"
        if self.state != ExecutorState.HALTED:
            return False, f"not halted (state {self.state.name})"
        if not self.has_measurement:
            return False, "no joint state measured yet"
        self.queue.clear()
        self.drift_monitor.reset()
        self.last_command = None  # next command starts from the measured position
        self._set_state(ExecutorState.HOLDING, "resumed: holding the measured position")
        return True, "re-armed; holding the measured position until a new chunk arrives"

    # ---- the tick ----------------------------------------------------------
    def tick(self, now_s: float) -> TickResult:
        if self.blocked:
            self.queue.clear()
            return TickResult(None, self.state, self.last_drift)
        if self.state == ExecutorState.HALTED:
            self.queue.clear()
            return TickResult(None, self.state, self.last_drift)
        lost = self._feedback_problem(now_s)
        if lost:
            if not self.feedback_lost:  # on their return, start from the measured position again
                self.last_command = None
                self.drift_monitor.reset()
            self.feedback_lost = lost
            self._set_state(ExecutorState.IDLE, lost)
            return TickResult(None, self.state, self.last_drift)
        self.feedback_lost = ""
        drift = self._check_drift()
        if drift is not None and drift.level == DriftLevel.CRITICAL:
            self.queue.clear()
            worst = self.joint_names[drift.worst_dim]
            self._set_state(
                ExecutorState.HALTED,
                f"CRITICAL drift: trend {drift.trend:.3f} > {self.drift_monitor.critical_threshold} (worst {worst})",
            )
            return TickResult(None, self.state, drift, halted_now=True)
        dropped = self.queue.dropped
        due = self.queue.pop_due(now_s)
        expired = self._note_expiry(due, dropped, now_s)
        if not self.has_measurement:
            self._set_state(ExecutorState.IDLE, "waiting for joint states of every joint")
            return TickResult(None, self.state, drift, expired_now=expired)
        command = self._next_command(due)
        if command is None:
            self._set_state(ExecutorState.IDLE, self._idle_reason())
            return TickResult(None, self.state, drift, expired_now=expired)
        if due is not None and due.sequence > self._last_first_used_sequence:
            self._last_first_used_sequence = due.sequence
            self.obs_to_command_ms.add((now_s - due.stamp_s) * 1e3)
        self.last_command = command
        self.drift_monitor.record_command(command)
        if len(self.queue) or due is not None:
            self._set_state(ExecutorState.RUNNING, "")
        else:
            self._set_state(ExecutorState.HOLDING, "queue ran dry: holding the last command")
        return TickResult(command, self.state, drift, expired_now=expired)

    def _note_expiry(self, due, dropped_before: int, now_s: float) -> bool:
        """True if this tick dropped the last queued actions of a chunk none of whose actions ever ran."""
        sequence = self.queue.last_dropped_sequence
        if due is not None or self.queue.dropped == dropped_before or sequence is None:
            return False
        if sequence <= max(self._last_first_used_sequence, self._last_expired_sequence):
            return False  # the tail of a chunk that did run (a late tick), or counted already
        if self.queue.head_sequence() == sequence:
            return False  # some of it is still to come
        self._last_expired_sequence = sequence
        self.expired_chunks += 1
        self.last_expiry = (
            f"chunk {sequence} expired unexecuted: all its actions were overdue at the tick at {now_s:.3f} s "
            f"(it came too late, or no tick fell within its actions' times)"
        )
        return True

    def _idle_reason(self) -> str:
        if self.accepted_chunks == 0:
            return "no chunk received yet"
        if self.expired_chunks:
            return f"{self.last_expiry}; waiting for a newer chunk"
        return "no chunk received yet"

    def _next_command(self, due) -> Optional[np.ndarray]:
        if self.last_command is None:
            if due is None and self.state != ExecutorState.HOLDING and not len(self.queue):
                return None
            # Exactly the measured position, even outside the limits: clamping it would be a jump. With a
            # chunk queued whose first action is not due yet (it is timed from its observation), this holds
            # the arm where it is until then.
            return self.measured.copy()
        target = due.action if due is not None else self.last_command
        return self.safety.apply(target, self.last_command)

    def _check_drift(self) -> Optional[DriftSample]:
        if self.last_command is None or not self.has_measurement:
            return None
        sample = self.drift_monitor.update(self.measured)
        if sample is not None:
            self.last_drift = sample
        return sample

    def _set_state(self, state: ExecutorState, reason: str) -> None:
        self.state = state
        self.reason = reason

    # ---- status -------------------------------------------------------------
    def oldest_action_age_ms(self, now_s: float) -> float:
        oldest = self.queue.oldest_stamp()
        return 0.0 if oldest is None else max(0.0, (now_s - oldest) * 1e3)
