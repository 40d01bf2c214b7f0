"""The policy node's decisions without ROS: which inputs are fresh, and when to compute a chunk.

- `InputBuffer` keeps the newest sample of each camera and each joint, with its
  stamp, and says which inputs are missing or older than the age limit.
- `ChunkTrigger` decides when a chunk is wanted: when the executor's queue falls
  below a threshold (mode `queue`) or at a fixed rate (mode `fixed_rate`). After a
  chunk is published it waits until the executor reports that sequence (or a
  wall-clock timeout passes) so one low-queue report does not trigger twice. Between
  status reports it counts the queue down itself from the chunk's due times.
- No executor, no chunk: once the executor's status has been silent for
  `executor_timeout_s` (wall clock) the trigger wants nothing, until a status
  arrives again (a restarted executor).
- Once a chunk is wanted, inference waits for camera frames and joint states
  all newer than the request (at most `fresh_wait_s`), so the observation is as
  new as the sensors allow.
"""

from __future__ import annotations

import time

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

TRIGGER_MODES = ("queue", "fixed_rate")
STAMP_TOLERANCE_S = 1e-6


class InputBuffer:
    def __init__(self, camera_names: Sequence[str], joint_names: Sequence[str], max_age_s: float):
        self.camera_names = tuple(camera_names)
        self.joint_names = tuple(joint_names)
        self.max_age_s = max_age_s
        self._images: Dict[str, Any] = {}
        self._image_stamps: Dict[str, float] = {}
        self._joints = np.full(len(self.joint_names), np.nan)
        self._joint_stamps = np.full(len(self.joint_names), -np.inf)

    def put_image(self, camera: str, stamp_s: float, payload: Any) -> None:
        """Keep the newest frame of `camera` (payload is converted only when used)."""
        if stamp_s >= self._image_stamps.get(camera, -np.inf):
            self._images[camera] = payload
            self._image_stamps[camera] = stamp_s

    def put_joints(self, columns: Sequence[int], values: Sequence[float], stamp_s: float) -> None:
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values)
        columns = np.asarray(columns, dtype=int)[keep]
        self._joints[columns] = values[keep]
        self._joint_stamps[columns] = stamp_s

    def ages(self, now_s: float) -> Dict[str, float]:
        """Age in seconds of every input (inf when never received); joints per arm-side group."""
        ages = {cam: now_s - self._image_stamps.get(cam, -np.inf) for cam in self.camera_names}
        ages["joint_states"] = float(now_s - self._joint_stamps.min()) if len(self._joint_stamps) else 0.0
        return ages

    def problems(self, now_s: float) -> List[str]:
        """Why the inputs cannot be used now (empty list when they can)."""
        out = []
        for name, age in self.ages(now_s).items():
            if not np.isfinite(age):
                missing = [n for n, s in zip(self.joint_names, self._joint_stamps) if not np.isfinite(s)]
                out.append(f"no {name} received" + (f" ({', '.join(missing[:3])}...)" if name == "joint_states" else ""))
            elif age > self.max_age_s:
                out.append(f"{name} is {age:.3f} s old (limit {self.max_age_s} s)")
            elif age < -self.max_age_s:
                out.append(f"{name} is stamped {-age:.3f} s in the future")
        return out

    def inputs_newer_than(self, t_s: float) -> bool:
        """Every camera frame and every joint is stamped at or after `t_s` (to the microsecond: a stamp
        and a clock reading of the same instant can differ in the last bits of a float)."""
        t_s -= STAMP_TOLERANCE_S
        frames = all(self._image_stamps.get(cam, -np.inf) >= t_s for cam in self.camera_names)
        return frames and bool(np.all(self._joint_stamps >= t_s))

    def observation(self):
        """(payload per camera, joint positions, observation stamp = the oldest camera frame's stamp)."""
        stamp = min(self._image_stamps[cam] for cam in self.camera_names)
        return dict(self._images), self._joints.copy(), stamp


@dataclass
class ChunkTrigger:
    mode: str = "queue"
    queue_low_threshold: int = 10
    fixed_period_s: float = 0.2
    confirm_timeout_s: float = 1.0  # wall clock: a chunk lost in transit is sent again even while sim time stands still
    fresh_wait_s: float = 0.05
    executor_timeout_s: float = 1.0  # wall clock; 0: chunks are wanted without any executor status
    _queue_depth: Optional[int] = None
    _confirmed_sequence: int = -1
    _pending_sequence: Optional[int] = None
    wall_clock: Callable[[], float] = time.monotonic
    _pending_since_wall: float = 0.0
    _last_request: float = -np.inf
    _wanted_since: Optional[float] = field(default=None)
    _halted: bool = False
    _pending_due_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _due_tolerance_s: float = 0.0
    _last_status_wall: Optional[float] = None

    def __post_init__(self):
        if self.mode not in TRIGGER_MODES:
            raise ValueError(f"trigger mode must be one of {TRIGGER_MODES}, got {self.mode!r}")
        if self.mode == "fixed_rate" and not self.fixed_period_s > 0:
            raise ValueError("fixed_rate needs a positive rate")
        if self.executor_timeout_s < 0:
            raise ValueError(f"executor_timeout_s must be >= 0 (0: no limit), got {self.executor_timeout_s}")

    def restart(self) -> None:
        """Forget the executor's queue and any unconfirmed chunk (on activation: the executor may be new)."""
        self._queue_depth = None
        self._pending_sequence = None
        self._pending_due_s = np.zeros(0)
        self._wanted_since = None
        self._last_request = -np.inf
        self._halted = False

    def on_executor_status(self, queue_depth: int, last_sequence: int, halted: bool = False) -> None:
        self._halted = halted
        self._last_status_wall = self.wall_clock()
        self._queue_depth = int(queue_depth)
        self._confirmed_sequence = max(self._confirmed_sequence, int(last_sequence))

    def on_published(self, sequence: int, now_s: float, due_s: Sequence[float] = (), period_s: float = 0.0) -> None:
        """A chunk went out; `due_s` (its rows' due times) lets the queue depth be counted between status reports."""
        self._pending_due_s = np.asarray(due_s, dtype=np.float64)
        self._due_tolerance_s = 0.5 * period_s
        self._pending_sequence = sequence
        self._pending_since_wall = self.wall_clock()
        self._last_request = self._wanted_since if self._wanted_since is not None else now_s
        self._wanted_since = None

    def queue_depth(self, now_s: float) -> Optional[int]:
        """The executor's queue depth at `now_s`: its last report, or fewer once our accepted chunk's
        rows come due (the executor pops each row at its tick), so the request lands on the exact
        step however the status reports are timed."""
        depth = self._queue_depth
        confirmed = self._pending_sequence is not None and self._confirmed_sequence >= self._pending_sequence
        if depth is not None and confirmed and self._pending_due_s.size:
            depth = min(depth, int(np.count_nonzero(self._pending_due_s > now_s + self._due_tolerance_s)))
        return depth

    def _awaiting_executor(self) -> bool:
        if self._pending_sequence is None or self._confirmed_sequence >= self._pending_sequence:
            return False
        return self.wall_clock() - self._pending_since_wall < self.confirm_timeout_s

    def executor_problem(self) -> str:
        """Why no executor would take a chunk now (empty when one reports)."""
        if self.executor_timeout_s <= 0:
            return ""
        if self._last_status_wall is None:
            return "no executor status received"
        silent = self.wall_clock() - self._last_status_wall
        if silent > self.executor_timeout_s:
            return f"no executor status for {silent:.1f} s (limit {self.executor_timeout_s} s)"
        return ""

    def wanted_since(self, now_s: float) -> Optional[float]:
        """When the current request for a chunk began, or None if no chunk is wanted now."""
        if self._halted or self.executor_problem():  # a halted executor discards chunks; wait for ~/resume
            self._wanted_since = None
            return None
        if self._wanted_since is None:
            if self.mode == "fixed_rate":
                due = now_s - self._last_request >= self.fixed_period_s
            else:
                depth = self.queue_depth(now_s)
                low = depth is None or depth < self.queue_low_threshold
                due = low and not self._awaiting_executor()
            if due:
                self._wanted_since = now_s
        return self._wanted_since

    def ready(self, now_s: float, inputs: InputBuffer) -> bool:
        """A chunk is wanted and the camera frames are as fresh as they will get."""
        since = self.wanted_since(now_s)
        if since is None:
            return False
        return inputs.inputs_newer_than(since) or now_s - since >= self.fresh_wait_s
