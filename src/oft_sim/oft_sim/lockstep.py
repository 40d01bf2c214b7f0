"""Command bookkeeping and the lockstep rule of the simulator node (plain Python, no ROS).

Lockstep rule: physics advances one 20 ms control step as soon as every arm
has received a command since the previous step (the executor, ticking on the
simulator's /clock, sends one command per arm per tick), or, when no complete
command set arrives, after `step_timeout_s` of wall time (so nodes that are
idle or waiting still see time move). A slow machine therefore slows sim time
instead of dropping control ticks, and a fast one never runs ahead of the
controller. In realtime mode steps are paced by the wall clock instead.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from oft_policy.names import ARM_JOINTS, ARM_SIDES

JOINTS_PER_ARM = len(ARM_JOINTS)  # 6 arm joints + gripper


class CommandBuffer:
    """Latest joint-position target of both arms (14 values, ALOHA order).

    Partial commands (Interbotix: 6 arm joints, then the gripper on its own) update
    their part; an arm counts as commanded for this step once its arm joints arrived.
    Malformed commands raise ValueError and change nothing.
    """

    def __init__(self, initial: Sequence[float]):
        self.target = np.array(initial, dtype=np.float64)
        if self.target.shape != (JOINTS_PER_ARM * len(ARM_SIDES),):
            raise ValueError(f"initial target must have {JOINTS_PER_ARM * len(ARM_SIDES)} values")
        self._fresh = [False] * len(ARM_SIDES)
        self.received = 0

    def reset(self, initial: Sequence[float]) -> None:
        self.target[:] = initial
        self._fresh = [False] * len(ARM_SIDES)

    def set_arm(self, arm: int, values: Sequence[float]) -> None:
        """All 7 values of one arm (ros2_control forward position controller)."""
        self._write(arm, 0, values, JOINTS_PER_ARM)

    def set_arm_joints(self, arm: int, values: Sequence[float]) -> None:
        """The 6 arm joints (Interbotix group 'arm'); the gripper keeps its target."""
        self._write(arm, 0, values, JOINTS_PER_ARM - 1)

    def set_gripper(self, arm: int, value: float) -> None:
        """The gripper alone (Interbotix single 'gripper'): normalized 0 closed .. 1 open."""
        self._write(arm, JOINTS_PER_ARM - 1, [value], 1, counts_as_step=False)

    def all_fresh(self) -> bool:
        return all(self._fresh)

    def any_fresh(self) -> bool:
        return any(self._fresh)

    def consume(self) -> np.ndarray:
        """The target for the next step; marks every arm as waiting for its next command."""
        self._fresh = [False] * len(ARM_SIDES)
        return self.target.copy()

    def _write(self, arm: int, start: int, values, expected: int, counts_as_step: bool = True) -> None:
        if not 0 <= arm < len(ARM_SIDES):
            raise ValueError(f"arm index {arm} out of range")
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size != expected:
            raise ValueError(f"{ARM_SIDES[arm]} arm command needs {expected} values, got {array.size}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{ARM_SIDES[arm]} arm command has non-finite values {array.tolist()}")
        offset = arm * JOINTS_PER_ARM + start
        self.target[offset : offset + expected] = array
        self.received += 1
        if counts_as_step:
            self._fresh[arm] = True


class StepGate:
    """Decides when the simulator takes its next control step (see module docstring)."""

    def __init__(self, control_period_s: float, step_timeout_s: float, realtime: bool):
        if control_period_s <= 0 or step_timeout_s <= 0:
            raise ValueError("control_period_s and step_timeout_s must be positive")
        self.control_period_s = control_period_s
        self.step_timeout_s = step_timeout_s
        self.realtime = realtime
        self._last_step_wall: Optional[float] = None
        self.timeouts = 0

    def restart(self, now_wall: float) -> None:
        self._last_step_wall = now_wall

    def should_step(self, now_wall: float, commands_complete: bool) -> bool:
        if self._last_step_wall is None:
            self._last_step_wall = now_wall
        elapsed = now_wall - self._last_step_wall
        if self.realtime:
            return elapsed >= self.control_period_s
        if commands_complete:
            return True
        if elapsed >= self.step_timeout_s:
            self.timeouts += 1
            return True
        return False

    def stepped(self, now_wall: float) -> None:
        if self.realtime and self._last_step_wall is not None:
            # Keep the wall-clock grid (no cumulative drift) unless we fell behind by a whole period.
            due = self._last_step_wall + self.control_period_s
            self._last_step_wall = due if now_wall - due < self.control_period_s else now_wall
        else:
            self._last_step_wall = now_wall


class ChunkCoverage:
    """Optional policy lockstep: sim time may not pass the end of the newest action chunk.

    The executor holds its last command when its queue runs dry, and on a slow machine
    the policy's forward pass would otherwise let sim time run on (the arms frozen) for as
    many steps as the machine is slow. With this gate the simulator waits (up to a wall
    timeout) for the next chunk instead. A chunk requested before the newest one ends still
    arrives after a machine-dependent number of steps. Before the first chunk nothing is held back.
    """

    def __init__(self, timeout_s: float):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.timeout_s = timeout_s
        self.covered_until_ns: Optional[int] = None
        self.chunks = 0
        self.stalls = 0  # steps taken because the timeout passed without a chunk
        self._waiting_since: Optional[float] = None

    def add_chunk(self, start_ns: int, rows: int, period_ns: int) -> None:
        end = start_ns + rows * period_ns
        self.covered_until_ns = end if self.covered_until_ns is None else max(self.covered_until_ns, end)
        self.chunks += 1

    def reset(self) -> None:
        """New episode: the previous episode's chunks cover nothing."""
        self.covered_until_ns = None
        self._waiting_since = None

    def allows(self, next_step_ns: int, now_wall: float) -> bool:
        """May the simulator advance to `next_step_ns`?"""
        if self.covered_until_ns is None or next_step_ns <= self.covered_until_ns:
            self._waiting_since = None
            return True
        if self._waiting_since is None:
            self._waiting_since = now_wall
        if now_wall - self._waiting_since >= self.timeout_s:
            self.stalls += 1
            self.reset()  # run free until the next chunk arrives
            return True
        return False
