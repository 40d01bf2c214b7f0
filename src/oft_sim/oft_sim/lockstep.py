"""Command bookkeeping and the lockstep rule of the simulator node (plain Python, no ROS).

Lockstep rule: physics advances one 20 ms control step as soon as every arm
has received a command (arm group and gripper) since the previous step (the executor, ticking on the
simulator's /clock or joint states, sends one command per arm per tick), or, when
no complete command set arrives, after `step_timeout_s` of wall time (so nodes that
are idle or waiting still see time move). A slow machine therefore slows sim time
instead of dropping control ticks, and a fast one never runs ahead of the
controller. In realtime mode steps are paced by the wall clock instead.

Strict lockstep (`ChunkCoverage` with `hold_steps`) also holds time for the policy,
and a step then waits for every arm's command however long it takes (up to the
chunk timeout), except an episode's first step, which nothing commands: the
executor's first tick comes before the first chunk.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from oft_policy.names import ARM_JOINTS, ARM_SIDES

JOINTS_PER_ARM = len(ARM_JOINTS)  # 6 arm joints + gripper


class CommandBuffer:
    """Latest joint-position target of both arms (14 values, ALOHA order: arm rad, gripper opening 0..1).

    The driver takes an arm's 6 joints (group `arm`) and its gripper (single `gripper`) as
    two commands; an arm counts as commanded for this step once both arrived, so a step
    never falls between the two halves of one tick. A gripper command the driver refused
    still counts as received (the driver got it and keeps the old goal). Malformed values
    raise ValueError and change nothing.
    """

    PARTS = ("arm", "gripper")

    def __init__(self, initial: Sequence[float]):
        self.target = np.array(initial, dtype=np.float64)
        if self.target.shape != (JOINTS_PER_ARM * len(ARM_SIDES),):
            raise ValueError(f"initial target must have {JOINTS_PER_ARM * len(ARM_SIDES)} values")
        self._fresh = np.zeros((len(ARM_SIDES), len(self.PARTS)), dtype=bool)
        self.received = 0

    def reset(self, initial: Sequence[float]) -> None:
        self.target[:] = initial
        self._fresh[:] = False

    def set_arm_joints(self, arm: int, values: Sequence[float]) -> None:
        """The 6 arm joints (group 'arm'); the gripper keeps its target."""
        self._write(arm, 0, values, JOINTS_PER_ARM - 1)
        self._fresh[arm, 0] = True

    def set_gripper(self, arm: int, opening: float) -> None:
        """The gripper alone: opening 0 closed .. 1 open."""
        self._write(arm, JOINTS_PER_ARM - 1, [opening], 1)
        self._fresh[arm, 1] = True

    def gripper_refused(self, arm: int) -> None:
        self._check_arm(arm)
        self._fresh[arm, 1] = True

    def all_fresh(self) -> bool:
        return bool(self._fresh.all())

    def any_fresh(self) -> bool:
        return bool(self._fresh.any())

    def consume(self) -> np.ndarray:
        """The target for the next step; marks every arm as waiting for its next command."""
        self._fresh[:] = False
        return self.target.copy()

    @staticmethod
    def _check_arm(arm: int) -> None:
        if not 0 <= arm < len(ARM_SIDES):
            raise ValueError(f"arm index {arm} out of range")

    def _write(self, arm: int, start: int, values, expected: int) -> None:
        self._check_arm(arm)
        array = np.asarray(values, dtype=np.float64).reshape(-1)
        if array.size != expected:
            raise ValueError(f"{ARM_SIDES[arm]} arm command needs {expected} values, got {array.size}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{ARM_SIDES[arm]} arm command has non-finite values {array.tolist()}")
        offset = arm * JOINTS_PER_ARM + start
        self.target[offset : offset + expected] = array
        self.received += 1


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
    """Policy lockstep: sim time may not pass the hold point of the newest action chunk.

    The executor holds its last command when its queue runs dry, and on a slow machine
    the policy's forward pass would otherwise let sim time run on for as many steps as
    the machine is slow. With this gate the simulator waits (up to a wall timeout) for
    the next chunk instead.

    Strict lockstep (``hold_steps`` > 0): the simulator stops at ``hold_steps`` periods
    after the chunk's observation, the step at which the policy asks for the next one, so
    every chunk is computed from the same sim state on any machine. With
    ``require_ack`` a chunk counts only once the executor reports its sequence
    (ExecutorStatus.last_sequence), so the executor has it before sim time moves on.
    Strict lockstep also holds a new episode at its first step until the first chunk.
    ``hold_steps`` 0 holds at the chunk's last row instead (a chunk requested before then
    lands a machine-dependent number of steps later) and runs free until the first chunk.
    """

    def __init__(self, timeout_s: float, hold_steps: int = 0, require_ack: bool = False):
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if hold_steps < 0:
            raise ValueError("hold_steps must be >= 0")
        self.timeout_s = timeout_s
        self.hold_steps = hold_steps
        self.require_ack = require_ack
        self.covered_until_ns: Optional[int] = None
        self.chunks = 0
        self.stalls = 0  # steps taken because the timeout passed without a chunk
        self._unacknowledged: dict = {}  # sequence -> hold point (ns)
        self._acknowledged_sequence = -1
        self._waiting_since: Optional[float] = None

    def add_chunk(self, stamp_ns: int, start_ns: int, rows: int, period_ns: int, sequence: int = 0) -> None:
        """A chunk seen on the topic: observation stamp, first row's due time, rows, period."""
        if self.hold_steps:
            hold = stamp_ns + self.hold_steps * period_ns
        else:
            hold = start_ns + rows * period_ns
        self.chunks += 1
        if self.require_ack and sequence > self._acknowledged_sequence:
            self._unacknowledged[sequence] = hold
        else:
            self._cover(hold)

    def acknowledge(self, last_sequence: int) -> None:
        """The executor reports it accepted chunks up to `last_sequence`."""
        self._acknowledged_sequence = max(self._acknowledged_sequence, last_sequence)
        for sequence in [s for s in self._unacknowledged if s <= last_sequence]:
            self._cover(self._unacknowledged.pop(sequence))

    def _cover(self, hold_ns: int) -> None:
        self.covered_until_ns = hold_ns if self.covered_until_ns is None else max(self.covered_until_ns, hold_ns)

    def reset(self, episode_start_ns: Optional[int] = None) -> None:
        """New episode at `episode_start_ns`: the previous episode's chunks cover nothing."""
        self.covered_until_ns = episode_start_ns if self.hold_steps else None
        self._unacknowledged.clear()
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
            self.covered_until_ns = None  # run free until the next chunk arrives
            self._waiting_since = None
            return True
        return False
