"""Runtime cores without ROS: limits, chunk validation, the action queue, drift, executor ticks."""

import math

import numpy as np
import pytest

from oft_policy.names import ALOHA_JOINT_NAMES
from oft_policy.normalization import NormalizationStats
from oft_policy.runtime import (
    ActionDriftMonitor,
    ActionQueue,
    Chunk,
    ChunkRejected,
    ChunkValidator,
    DriftLevel,
    ExecutorCore,
    ExecutorState,
    JointLimits,
    LimitsError,
    RollingStats,
    SafetyFilter,
    TickMonitor,
    chunk_start,
    drift_scale_from_stats,
    start_lead_limit,
    watched_joint_mask,
)

D = len(ALOHA_JOINT_NAMES)
PERIOD = 0.02
LIMITS = JointLimits.vx300s(ALOHA_JOINT_NAMES)


def chunk(rows, seq=1, stamp=10.0, start=None, period=PERIOD, names=ALOHA_JOINT_NAMES):
    rows = np.asarray(rows, dtype=np.float64)
    return Chunk.from_rows(rows, names, seq, stamp, stamp if start is None else start, period)


def constant_rows(value, n=5):
    return np.full((n, D), float(value))


# ---- limits ---------------------------------------------------------------------
def test_vx300s_defaults_map_by_joint_name():
    assert LIMITS.lower[ALOHA_JOINT_NAMES.index("right_shoulder")] == pytest.approx(-1.85005)
    assert LIMITS.upper[ALOHA_JOINT_NAMES.index("left_wrist_angle")] == pytest.approx(2.23402)
    assert np.allclose(LIMITS.max_velocity, math.pi)
    with pytest.raises(LimitsError, match="not a vx300s joint"):
        JointLimits.vx300s(["left_knee"])


def test_limits_refuse_bad_ranges():
    with pytest.raises(LimitsError, match="lower limit not below"):
        JointLimits.create(["a"], [1.0], [0.0], [1.0])
    with pytest.raises(LimitsError, match="shape"):
        JointLimits.create(["a", "b"], [0.0], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(LimitsError, match="positive"):
        JointLimits.create(["a"], [0.0], [1.0], [0.0])


def test_safety_filter_clamps_position_and_step():
    safety = SafetyFilter(LIMITS, PERIOD)
    previous = np.zeros(D)
    command = safety.apply(np.full(D, 100.0), previous)
    assert np.all(command <= LIMITS.upper)
    assert np.allclose(command, math.pi * PERIOD)  # one tick of the maximum speed
    small = np.full(D, 0.01)
    assert np.allclose(safety.apply(small, previous), small)


# ---- validation -----------------------------------------------------------------
def validator(**kw):
    return ChunkValidator(joint_names=ALOHA_JOINT_NAMES, limits=LIMITS, **kw)


def test_valid_chunk_accepted_and_sequence_recorded():
    v = validator()
    v.validate(chunk(constant_rows(0.1), seq=5), now_s=10.05)
    assert v.last_sequence == 5


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: chunk(np.where(np.eye(5, D) > 0, np.nan, 0.0)), "NaN or Inf"),
        (lambda: chunk(np.full((5, D), np.inf)), "NaN or Inf"),
        (lambda: chunk(constant_rows(1e6)), "outside"),
        (lambda: chunk(np.zeros((5, D - 1)), names=ALOHA_JOINT_NAMES[:-1]), "joint names"),
        (lambda: chunk(constant_rows(0), names=ALOHA_JOINT_NAMES[::-1]), "reordered"),
        (lambda: chunk(constant_rows(0), names=("left_knee",) + ALOHA_JOINT_NAMES[1:]), "unknown joint"),
        (lambda: chunk(constant_rows(0), stamp=5.0), "stale"),
        (lambda: chunk(constant_rows(0), stamp=12.0), "future-dated"),
        (lambda: chunk(constant_rows(0), start=9.0), "precedes"),
        (lambda: chunk(constant_rows(0), period=0.0), "period"),
        (lambda: chunk(constant_rows(0), period=float("nan")), "not finite"),
        (lambda: chunk(np.zeros((0, D))), "chunk_size"),
        (lambda: chunk(constant_rows(0, n=7), period=1.0), "horizon"),  # last action due 6 s after the observation
    ],
)
def test_bad_chunks_rejected_with_reason(make, reason):
    v = validator()
    with pytest.raises(ChunkRejected, match=reason):
        v.validate(make(), now_s=10.05)
    assert v.last_sequence is None


def test_dims_must_match_data_length():
    good = chunk(constant_rows(0))
    bad = Chunk(**{**good.__dict__, "actions": good.actions[:-3]})
    with pytest.raises(ChunkRejected, match="action values"):
        validator().validate(bad, now_s=10.05)
    lying = Chunk(**{**good.__dict__, "action_dim": D + 1})
    with pytest.raises(ChunkRejected, match="action_dim"):
        validator().validate(lying, now_s=10.05)


def test_sequence_must_increase():
    v = validator()
    v.validate(chunk(constant_rows(0), seq=3), now_s=10.0)
    for seq in (3, 2):
        with pytest.raises(ChunkRejected, match="sequence"):
            v.validate(chunk(constant_rows(0), seq=seq), now_s=10.0)
    v.validate(chunk(constant_rows(0), seq=4), now_s=10.0)


# ---- queue ------------------------------------------------------------------------
def ramp(n, offset=0.0):
    return np.tile(np.arange(n, dtype=np.float64)[:, None] * 0.01 + offset, (1, D))


def test_queue_pops_in_order_one_per_tick():
    q = ActionQueue(PERIOD)
    q.insert(chunk(ramp(4), start=10.0))
    popped = [q.pop_due(10.0 + k * PERIOD).action[0] for k in range(4)]
    assert popped == pytest.approx([0.0, 0.01, 0.02, 0.03])
    assert q.pop_due(10.0 + 4 * PERIOD) is None and len(q) == 0


def test_queue_drops_overdue_actions_never_late():
    q = ActionQueue(PERIOD)
    q.insert(chunk(ramp(5), start=10.0))
    item = q.pop_due(10.0 + 2 * PERIOD)  # rows 0 and 1 are past due
    assert item.action[0] == pytest.approx(0.02) and q.dropped == 2
    assert q.pop_due(11.0) is None and q.dropped == 4 and len(q) == 0


def test_queue_waits_for_future_actions():
    q = ActionQueue(PERIOD)
    q.insert(chunk(ramp(2), start=10.1))
    assert q.pop_due(10.0) is None and len(q) == 2


def test_replace_keeps_head_and_swaps_tail():
    q = ActionQueue(PERIOD, "replace")
    q.insert(chunk(ramp(6), seq=1, start=10.0))
    q.insert(chunk(ramp(3, offset=1.0), seq=2, start=10.0 + 2 * PERIOD))
    values = [q.pop_due(10.0 + k * PERIOD).action[0] for k in range(5)]
    assert values == pytest.approx([0.0, 0.01, 1.0, 1.01, 1.02])
    assert len(q) == 0


def test_blend_averages_overlapping_steps():
    q = ActionQueue(PERIOD, "blend", blend_weight=0.25)
    q.insert(chunk(np.zeros((4, D)), seq=1, start=10.0))
    q.insert(chunk(np.ones((4, D)), seq=2, start=10.0 + 2 * PERIOD))
    values = [q.pop_due(10.0 + k * PERIOD).action[0] for k in range(6)]
    assert values == pytest.approx([0.0, 0.0, 0.25, 0.25, 1.0, 1.0])


def test_queue_refuses_bad_configuration():
    with pytest.raises(ValueError, match="policy"):
        ActionQueue(PERIOD, "average")
    with pytest.raises(ValueError, match="weight"):
        ActionQueue(PERIOD, "blend", 1.5)


# ---- drift --------------------------------------------------------------------------
def test_drift_levels_follow_the_trend():
    monitor = ActionDriftMonitor(np.ones(2), warn_threshold=0.05, critical_threshold=0.15, window=2, delay_ticks=1)
    monitor.record_command(np.zeros(2))
    assert monitor.update(np.zeros(2)) is None  # no command from a tick ago yet
    monitor.record_command(np.zeros(2))
    assert monitor.update(np.zeros(2)).level == DriftLevel.OK
    monitor.record_command(np.zeros(2))
    sample = monitor.update(np.array([0.0, 0.2]))  # mean 0.1, trend 0.05 -> still OK (not above)
    assert sample.level == DriftLevel.OK and sample.worst_dim == 1
    monitor.record_command(np.zeros(2))
    assert monitor.update(np.array([0.0, 0.2])).level == DriftLevel.WARN  # trend 0.1
    monitor.record_command(np.zeros(2))
    sample = monitor.update(np.array([0.0, 1.0]))  # trend (0.1 + 0.5) / 2
    assert sample.level == DriftLevel.CRITICAL and sample.trend == pytest.approx(0.3)


def test_a_gripper_held_open_by_a_grasped_object_is_not_drift():
    watched = watched_joint_mask(ALOHA_JOINT_NAMES)
    assert [n for n, w in zip(ALOHA_JOINT_NAMES, watched) if not w] == ["left_gripper", "right_gripper"]
    monitor = ActionDriftMonitor(np.ones(D), window=1, delay_ticks=0, watched=watched)
    command = np.zeros(D)
    squeezed = command.copy()
    squeezed[ALOHA_JOINT_NAMES.index("right_gripper")] = 0.9  # commanded closed, the cube keeps it open
    monitor.record_command(command)
    sample = monitor.update(squeezed)
    assert sample.level == DriftLevel.OK and sample.trend == 0.0
    assert sample.per_dim_error[ALOHA_JOINT_NAMES.index("right_gripper")] == pytest.approx(0.9)  # still reported
    drifted = squeezed.copy()
    drifted[ALOHA_JOINT_NAMES.index("right_elbow")] = 12 * 0.2  # one arm joint far off: mean 0.2 over 12
    monitor.record_command(command)
    sample = monitor.update(drifted)
    assert sample.level == DriftLevel.CRITICAL and ALOHA_JOINT_NAMES[sample.worst_dim] == "right_elbow"
    with pytest.raises(ValueError, match="not among"):
        watched_joint_mask(ALOHA_JOINT_NAMES, ["left_knee"])
    assert watched_joint_mask(ALOHA_JOINT_NAMES, ["left_gripper"]).sum() == 1


def test_drift_compares_with_the_delayed_command():
    monitor = ActionDriftMonitor(np.ones(1), delay_ticks=2, window=1)
    for value in (0.0, 1.0, 2.0):
        monitor.record_command(np.array([value]))
    assert monitor.update(np.array([0.0])).mean_drift == 0.0  # compared with the command of 2 ticks ago


def test_drift_scale_from_stats_uses_action_range():
    rng = np.random.default_rng(0)
    samples = rng.uniform(-0.5, 0.5, size=(100, D))
    samples[:, 0] = 0.3  # a joint the task never moves: floored at a tenth of its limit range
    samples[:, 2] = rng.uniform(0.0, 0.02, size=100)  # barely moves: floored too
    stats = NormalizationStats.fit(samples, samples, ALOHA_JOINT_NAMES)
    scale = drift_scale_from_stats(stats, ALOHA_JOINT_NAMES, LIMITS)
    assert scale[1] == pytest.approx(samples[:, 1].max() - samples[:, 1].min())
    assert scale[0] == pytest.approx(0.1 * LIMITS.span[0])
    assert scale[2] == pytest.approx(0.1 * LIMITS.span[2])
    with pytest.raises(ValueError, match="name joints"):
        drift_scale_from_stats(stats, ALOHA_JOINT_NAMES[::-1], LIMITS)


# ---- latency ------------------------------------------------------------------------
def test_rolling_stats_and_missed_ticks():
    stats = RollingStats(maxlen=3)
    for v in (100.0, 1.0, 2.0, 3.0):
        stats.add(v)
    assert stats.percentiles((50,))["p50"] == 2.0 and stats.max() == 3.0 and stats.count == 4
    ticks = TickMonitor(0.01)
    for t in (0.0, 0.01, 0.02, 0.05, 0.06):  # 0.02 -> 0.05 skips two ticks
        ticks.on_tick(t)
    summary = ticks.summary()
    assert summary["missed_ticks"] == 2 and summary["period_ms"]["max"] == pytest.approx(30.0)


# ---- executor core --------------------------------------------------------------------
def make_core(delay_ticks=0, window=1, critical=0.15, feedback_timeout_s=0.0):
    return ExecutorCore(
        ALOHA_JOINT_NAMES,
        SafetyFilter(LIMITS, PERIOD),
        ChunkValidator(ALOHA_JOINT_NAMES, LIMITS),
        ActionQueue(PERIOD),
        ActionDriftMonitor(LIMITS.span, critical_threshold=critical, window=window, delay_ticks=delay_ticks),
        feedback_timeout_s=feedback_timeout_s,
    )


def measure(core, values):
    core.set_measured(range(D), np.broadcast_to(values, (D,)))


def test_executor_idle_until_measured_and_chunk():
    core = make_core()
    assert core.tick(10.0).command is None and core.state == ExecutorState.IDLE
    core.submit_chunk(chunk(ramp(3, 0.5), start=10.02), now_s=10.0)
    assert core.tick(10.02).command is None  # no joint state yet: never command blind
    measure(core, 0.3)
    late = core.tick(10.04)  # row 1 is due: the first command is the measured position
    assert np.allclose(late.command, 0.3) and late.state == ExecutorState.RUNNING


def test_executor_sends_nothing_without_fresh_joint_states_and_restarts_from_the_measurement():
    core = make_core(feedback_timeout_s=0.1)
    core.set_measured(range(D), np.full(D, 0.3), now_s=10.0)
    core.submit_chunk(chunk(np.full((20, D), 0.5), start=10.0), now_s=10.0)
    sent = [core.tick(10.0 + k * PERIOD).command for k in range(8)]  # states stop after t = 10.0
    assert all(c is not None for c in sent[:6]) and sent[6] is None and sent[7] is None
    assert core.state == ExecutorState.IDLE and core.reason.startswith("no joint states for 0.1")
    core.set_measured(range(D), np.full(D, 0.35), now_s=10.16)  # they return, the arm where it stopped
    back = core.tick(10.16)
    assert back.state == ExecutorState.RUNNING and np.allclose(back.command, 0.35) and not core.feedback_lost
    one_joint_stale = make_core(feedback_timeout_s=0.1)
    one_joint_stale.set_measured(range(D), np.zeros(D), now_s=10.0)
    one_joint_stale.set_measured(range(1, D), np.zeros(D - 1), now_s=10.5)
    assert one_joint_stale._feedback_problem(10.5).startswith("no joint states")
    with pytest.raises(ValueError, match="feedback_timeout_s"):
        make_core(feedback_timeout_s=-1.0)


def test_executor_first_command_is_measured_then_rate_limited_then_holds():
    core = make_core()
    measure(core, 0.3)
    core.submit_chunk(chunk(np.full((3, D), 0.5), start=10.0), now_s=10.0)
    first = core.tick(10.0)
    assert first.state == ExecutorState.RUNNING and np.allclose(first.command, 0.3)
    second = core.tick(10.02).command
    assert np.allclose(second, 0.3 + math.pi * PERIOD)
    third = core.tick(10.04).command
    assert np.allclose(third, 0.3 + 2 * math.pi * PERIOD)
    hold = core.tick(10.06)
    assert hold.state == ExecutorState.HOLDING and np.allclose(hold.command, third)


def test_executor_reports_a_chunk_that_expired_unexecuted():
    """A tick later than a whole chunk (a stalled joint-state source, say) drops it unexecuted, never late;
    the executor counts it and, never having commanded, says why it is still IDLE."""
    core = make_core()
    measure(core, 0.0)
    assert core.tick(9.96).state == ExecutorState.IDLE and core.reason == "no chunk received yet"
    core.submit_chunk(chunk(np.full((5, D), 0.01), seq=1, start=10.0), now_s=9.97)
    late = core.tick(10.2)  # rows due 10.00-10.08: all overdue
    assert late.command is None and late.expired_now and late.state == ExecutorState.IDLE
    assert core.expired_chunks == 1 and "chunk 1 expired unexecuted" in core.reason and len(core.queue) == 0
    assert not core.tick(10.24).expired_now and core.expired_chunks == 1
    core.submit_chunk(chunk(np.full((5, D), 0.01), seq=2, stamp=10.24, start=10.26), now_s=10.24)
    assert np.allclose(core.tick(10.26).command, 0.0) and core.state == ExecutorState.RUNNING


def test_executor_late_tick_after_a_chunk_ran_is_no_expiry():
    core = make_core()
    measure(core, 0.0)
    core.submit_chunk(chunk(np.full((5, D), 0.01), seq=1, start=10.0), now_s=10.0)
    assert core.tick(10.0).command is not None
    held = core.tick(10.5)  # the rest of chunk 1 is overdue: dropped, but chunk 1 did run
    assert not held.expired_now and held.state == ExecutorState.HOLDING and core.expired_chunks == 0
    assert core.queue.dropped == 4


def test_executor_rejected_chunk_changes_nothing():
    core = make_core()
    measure(core, 0.0)
    core.submit_chunk(chunk(np.full((3, D), 0.01), seq=1, start=10.0), now_s=10.0)
    with pytest.raises(ChunkRejected):
        core.submit_chunk(chunk(np.full((3, D), np.nan), seq=2, start=10.0), now_s=10.0)
    assert core.rejected_chunks == 1 and core.accepted_chunks == 1 and len(core.queue) == 3


def test_executor_halts_on_critical_drift_and_resume_rearms():
    core = make_core()
    measure(core, 0.0)
    core.submit_chunk(chunk(np.zeros((10, D)), start=10.0), now_s=10.0)
    assert core.tick(10.0).command is not None
    measure(core, 1.0)  # the arm is far from where it was told to be
    result = core.tick(10.02)
    assert result.halted_now and result.command is None and core.state == ExecutorState.HALTED
    assert "CRITICAL" in core.reason and len(core.queue) == 0
    core.submit_chunk(chunk(np.zeros((3, D)), seq=2, start=10.04), now_s=10.04)
    assert core.tick(10.04).command is None  # stays halted, chunks do not re-arm it
    ok, _ = core.resume()
    assert ok and core.state == ExecutorState.HOLDING
    resumed = core.tick(10.06)
    assert np.allclose(resumed.command, 1.0) and resumed.state == ExecutorState.HOLDING
    assert core.resume()[0] is False


def test_start_outside_limits_walks_back_at_the_step_limit_without_a_jump():
    limits = JointLimits.vx300s(ALOHA_JOINT_NAMES)
    safety = SafetyFilter(limits, 0.02)
    previous = limits.lower - 0.2  # e.g. a gripper closed on an object past its limit
    command = safety.apply(limits.lower + 0.1, previous)
    assert np.all(np.abs(command - previous) <= safety.max_step + 1e-12)
    assert np.all(command > previous)


# ---- inference delay ----------------------------------------------------------------
def test_chunk_start_without_delay_runs_from_when_the_chunk_is_ready():
    rows = ramp(5)
    kept, start = chunk_start(rows, stamp_s=10.0, ready_s=10.013, period_s=PERIOD)
    assert kept is rows and start == pytest.approx(10.013)
    assert chunk_start(rows, 10.0, 9.9, PERIOD)[1] == 10.0  # never before its observation


def test_chunk_start_with_delay_cuts_the_rows_overdue_when_it_can_run():
    rows = ramp(10)
    kept, start = chunk_start(rows, stamp_s=10.0, ready_s=10.0, period_s=PERIOD, inference_delay_steps=1)
    assert np.array_equal(kept, rows) and start == pytest.approx(10.02)  # row k due k + 1 ticks after it
    kept, start = chunk_start(rows, 10.0, 10.0, PERIOD, inference_delay_steps=4)
    assert np.array_equal(kept, rows[3:]) and start == pytest.approx(10.08)  # rows 0..2 were due during inference
    with pytest.raises(ValueError, match="leaves nothing"):
        chunk_start(rows, 10.0, 10.0, PERIOD, inference_delay_steps=11)
    with pytest.raises(ValueError, match=">= 0"):
        chunk_start(rows, 10.0, 10.0, PERIOD, inference_delay_steps=-1)
    assert start_lead_limit(0, PERIOD) == 0.2 and start_lead_limit(16, PERIOD) == pytest.approx(0.34)


def test_executor_runs_the_held_actions_through_the_inference_delay_then_the_new_chunk():
    """Observation at t = 10.0; inference takes 4 ticks. The arm runs the previous chunk at
    t+1..t+3 and the new chunk's row 3 (the one planned for t+4) at t+4."""
    core = ExecutorCore(
        ALOHA_JOINT_NAMES, SafetyFilter(LIMITS, PERIOD), ChunkValidator(ALOHA_JOINT_NAMES, LIMITS, max_future_s=start_lead_limit(4, PERIOD)),
        ActionQueue(PERIOD), ActionDriftMonitor(LIMITS.span),
    )
    measure(core, 0.0)
    first = chunk(np.full((10, D), 0.01), seq=0, stamp=9.9, start=9.98)
    core.submit_chunk(first, now_s=9.9)
    held = [core.tick(9.9 + k * PERIOD) for k in range(4)]  # 9.90..9.96: not due yet
    assert all(np.allclose(t.command, 0.0) and t.state == ExecutorState.RUNNING for t in held)  # the measured pose
    old = 0.001 * np.arange(20)[:, None] * np.ones(D)  # small steps: the speed limit never binds
    core.submit_chunk(chunk(old, seq=1, stamp=9.98, start=10.0), now_s=9.98)
    assert np.allclose(core.tick(10.0).command, 0.0)  # the old chunk's row 0
    new = 0.02 + 0.001 * np.arange(10)[:, None] * np.ones(D)
    kept, start = chunk_start(new, 10.0, 10.0, PERIOD, inference_delay_steps=4)
    core.submit_chunk(chunk(kept, seq=2, stamp=10.0, start=start), now_s=10.0)
    sent = [core.tick(10.0 + k * PERIOD).command[0] for k in range(1, 6)]
    assert np.allclose(sent[:3], 0.001 * np.array([1, 2, 3]))  # the old chunk's rows for t+1..t+3
    assert sent[3] == pytest.approx(0.023) and sent[4] == pytest.approx(0.024)  # then the new chunk from its row 3
