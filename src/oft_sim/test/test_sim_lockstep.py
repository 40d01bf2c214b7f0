"""Command bookkeeping and the lockstep stepping rule of the simulator node (no ROS)."""

import numpy as np
import pytest

from oft_sim.lockstep import CommandBuffer, StepGate


def test_step_needs_the_arm_group_and_the_gripper_of_every_arm():
    buffer = CommandBuffer(np.zeros(14))
    buffer.set_arm_joints(0, np.arange(6))
    buffer.set_gripper(0, 0.5)
    assert buffer.any_fresh() and not buffer.all_fresh()
    buffer.set_arm_joints(1, np.arange(6) + 10)
    assert not buffer.all_fresh()  # a step never falls between one tick's group and gripper commands
    buffer.set_gripper(1, 0.7)
    assert buffer.all_fresh()
    target = buffer.consume()
    assert np.array_equal(target, np.r_[np.arange(6), 0.5, np.arange(6) + 10, 0.7])
    assert not buffer.any_fresh()


def test_a_refused_gripper_command_counts_as_received_and_keeps_the_goal():
    buffer = CommandBuffer(np.full(14, 0.3))
    buffer.set_arm_joints(0, np.ones(6))
    buffer.gripper_refused(0)
    buffer.set_arm_joints(1, np.ones(6))
    buffer.gripper_refused(1)
    assert buffer.all_fresh() and buffer.target[6] == 0.3 and buffer.target[13] == 0.3


@pytest.mark.parametrize("bad", [[1.0] * 5, [float("nan")] * 6, [], [float("inf")] + [0.0] * 5])
def test_malformed_command_changes_nothing(bad):
    buffer = CommandBuffer(np.zeros(14))
    with pytest.raises(ValueError):
        buffer.set_arm_joints(0, bad)
    assert np.array_equal(buffer.target, np.zeros(14)) and not buffer.any_fresh()
    with pytest.raises(ValueError):
        buffer.set_arm_joints(2, [0.0] * 6)


def test_gate_lockstep_steps_on_commands_or_timeout():
    gate = StepGate(0.02, step_timeout_s=0.05, realtime=False)
    gate.restart(0.0)
    assert gate.should_step(0.001, commands_complete=True)
    gate.stepped(0.001)
    assert not gate.should_step(0.03, commands_complete=False)
    assert gate.should_step(0.052, commands_complete=False)
    assert gate.timeouts == 1


def test_gate_realtime_keeps_the_wall_grid():
    gate = StepGate(0.02, step_timeout_s=0.05, realtime=True)
    gate.restart(0.0)
    assert not gate.should_step(0.019, commands_complete=True)  # commands do not hurry realtime
    assert gate.should_step(0.0205, commands_complete=False)
    gate.stepped(0.0205)
    assert gate.should_step(0.0401, commands_complete=False)  # next due at 0.040, not 0.0405


def test_chunk_coverage_holds_sim_time_at_the_end_of_the_newest_chunk():
    from oft_sim.lockstep import ChunkCoverage

    coverage = ChunkCoverage(timeout_s=1.0)
    assert coverage.allows(10**9, now_wall=0.0)  # no chunk yet: free running
    coverage.add_chunk(stamp_ns=1_000_000_000, start_ns=1_000_000_000, rows=5, period_ns=20_000_000)  # until 1.10 s
    assert coverage.allows(1_100_000_000, now_wall=0.0)
    assert not coverage.allows(1_120_000_000, now_wall=0.1)  # policy still computing: wait
    assert not coverage.allows(1_120_000_000, now_wall=0.9)
    coverage.add_chunk(stamp_ns=1_100_000_000, start_ns=1_100_000_000, rows=5, period_ns=20_000_000)
    assert coverage.allows(1_120_000_000, now_wall=0.95)
    assert not coverage.allows(1_220_000_000, now_wall=1.0)
    assert coverage.allows(1_220_000_000, now_wall=2.1)  # timeout: step anyway, counted
    assert coverage.stalls == 1
    assert coverage.allows(5 * 10**9, now_wall=2.2)  # and run free until the next chunk
    coverage.add_chunk(stamp_ns=5 * 10**9, start_ns=5 * 10**9, rows=1, period_ns=20_000_000)
    assert not coverage.allows(5_040_000_000, now_wall=2.3)


def test_strict_coverage_holds_at_the_request_step_until_the_executor_has_the_chunk():
    from oft_sim.lockstep import ChunkCoverage

    period = 20_000_000
    coverage = ChunkCoverage(timeout_s=1.0, hold_steps=3, require_ack=True)
    # Observation at 1.00 s, first row due one period later, 49 rows: hold at 1.00 + 3 periods.
    coverage.add_chunk(stamp_ns=10**9, start_ns=10**9 + period, rows=49, period_ns=period, sequence=7)
    assert coverage.allows(10**9 + period, now_wall=0.0) is True  # unacknowledged: still free running
    coverage.acknowledge(6)  # an older chunk
    assert coverage.covered_until_ns is None
    coverage.acknowledge(7)
    assert coverage.covered_until_ns == 10**9 + 3 * period
    assert coverage.allows(10**9 + 3 * period, now_wall=0.0)
    assert not coverage.allows(10**9 + 4 * period, now_wall=0.5)  # the policy's request step: wait
    # The acknowledgement may come before the chunk message itself.
    coverage.acknowledge(8)
    coverage.add_chunk(stamp_ns=10**9 + 3 * period, start_ns=10**9 + 4 * period, rows=49, period_ns=period, sequence=8)
    assert coverage.allows(10**9 + 4 * period, now_wall=0.6)
    assert coverage.covered_until_ns == 10**9 + 6 * period
    coverage.reset(episode_start_ns=2 * 10**9)  # a new episode holds at its first step for its first chunk
    assert not coverage.allows(2 * 10**9 + period, now_wall=0.7)
    coverage.add_chunk(stamp_ns=2 * 10**9, start_ns=2 * 10**9 + period, rows=49, period_ns=period, sequence=9)
    assert not coverage.allows(2 * 10**9 + period, now_wall=0.8)  # not acknowledged yet
    coverage.acknowledge(9)
    assert coverage.allows(2 * 10**9 + period, now_wall=0.9)
    with pytest.raises(ValueError):
        ChunkCoverage(timeout_s=1.0, hold_steps=-1)
