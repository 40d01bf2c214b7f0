"""executor_node as a real process over real DDS, against a fake robot process that speaks
the ALOHA follower drivers' interface (interbotix_xs_sdk: modes, services, commands
interpreted by mode) and records every command."""

import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_runtime_support as support  # noqa: E402

from oft_policy.names import ALOHA_JOINT_NAMES  # noqa: E402
from oft_policy.runtime import JointLimits  # noqa: E402

D = len(ALOHA_JOINT_NAMES)
PERIOD = 0.02
MAX_STEP = math.pi * PERIOD  # vx300s default velocity limit per 50 Hz tick
LIMITS = JointLimits.vx300s(ALOHA_JOINT_NAMES)
EXECUTOR = "oft_policy.nodes.executor_node"
IDLE, RUNNING, HOLDING, HALTED = 0, 1, 2, 3


@pytest.fixture
def harness():
    with support.RosHarness() as h:
        yield h


@contextmanager
def running_executor(env, tmp_path, params=None, initial=0.0, robot_rate_hz=100.0, services=True):
    params = dict(params or {})
    robot = support.FakeRobot(env, tmp_path, initial=initial, rate_hz=robot_rate_hz, services=services)
    log = tmp_path / "executor.log"
    node = support.start_node(EXECUTOR, params, env, log)
    try:
        yield robot, node
    finally:
        support.stop_process(node)
        robot.stop()
        print(log.read_text()[-4000:])


def wait_ready(harness, robot, timeout=20.0):
    """The executor runs, has ticked with joint states of every joint, its chunk subscription is
    matched, and so are the robot's command subscriptions.

    Discovery matches each endpoint pair on its own: hearing the executor's status does not
    mean it hears our chunks yet, or that the robot hears its commands; a message published
    before its match is lost. The status sent before the first tick says "no chunk received yet"
    whether or not joint states arrive, so only a status after a tick (ticks > 0) tells; with
    tick_on_joint_states a tick is itself proof that the joint states of both arms arrive."""
    status = harness.wait_status(
        lambda s: s.state == IDLE and s.driver_ready and s.ticks > 0 and "joint states" not in s.reason,
        timeout, "executor ready")
    # The harness subscribes to the chunk topic itself, so the executor is the second subscriber.
    support.wait_for(lambda: harness.chunk_pub.get_subscription_count() >= 2, timeout,
                     what="the executor's chunk subscription")
    support.wait_for(robot.commands_matched, timeout, what="the robot's command subscriptions")
    return status


def assert_within_limits(vectors):
    vectors = np.asarray(vectors)
    assert np.all(vectors >= LIMITS.lower - 1e-5) and np.all(vectors <= LIMITS.upper + 1e-5)
    if len(vectors) > 1:
        steps = np.abs(np.diff(vectors, axis=0))
        assert steps.max() <= MAX_STEP + 1e-5, f"a command moved {steps.max():.4f} in one tick (limit {MAX_STEP:.4f})"


def test_chunk_runs_in_order_at_rate_then_holds(ros_env, harness, tmp_path):
    """Interbotix backend: one command per tick, rows in order, first command = measured, then HOLDING."""
    rows = 0.002 * np.arange(D)[None, :] + 0.01 * np.arange(1, 21)[:, None]  # distinct per joint and per row
    with running_executor(ros_env, tmp_path) as (robot, node):
        wait_ready(harness, robot)
        harness.publish_chunk(rows, sequence=1, start_delay_s=0.1)
        harness.wait_status(lambda s: s.state == HOLDING, 10.0, "HOLDING after the chunk")
        support.wait_for(lambda: len(robot.full_commands()) >= 30, 5.0, what="holding commands")
        records = robot.commands()
        ticks = robot.full_commands()
        assert node.poll() is None

    groups = [r for r in records if r["kind"] == "group"]
    singles = [r for r in records if r["kind"] == "single"]
    assert {r["name"] for r in groups} == {"arm"} and {len(r["values"]) for r in groups} == {6}
    assert {r["name"] for r in singles} == {"gripper"}
    vectors = [v for _, v in ticks]
    assert np.allclose(vectors[0], 0.0), "the first command must equal the measured position"
    matched = []
    for (_, previous), (t, vector) in zip(ticks, ticks[1:]):
        if np.allclose(vector, previous, atol=1e-9):
            continue  # a late tick dropped its row and held the last command (loaded machine)
        hits = [i for i, row in enumerate(rows) if np.allclose(vector, row, atol=1e-5)]
        assert hits, f"command {vector[:3]}... is not a row of the chunk"
        if not matched or matched[-1][0] != hits[0]:
            matched.append((hits[0], t))
    executed = [i for i, _ in matched]
    assert executed == sorted(executed), "rows ran out of order"
    # A late tick drops the rows it missed (never replays them), so on a loaded machine a few may be skipped.
    assert executed[-1] == len(rows) - 1 and len(executed) >= 0.5 * len(rows)
    per_row = np.diff([t for _, t in matched]) / np.diff(executed)
    assert 0.012 < np.median(per_row) < 0.03, f"median {np.median(per_row) * 1e3:.1f} ms per row, expected 20"
    held = [v for v in vectors if np.allclose(v, rows[-1], atol=1e-5)]
    assert len(held) >= 5, "the last row is held once the queue runs dry"
    assert_within_limits(vectors)


def test_new_chunk_preempts_the_queued_tail(ros_env, harness, tmp_path):
    """A new chunk replaces the rest of the old one."""
    with running_executor(ros_env, tmp_path) as (robot, node):
        wait_ready(harness, robot)
        harness.publish_chunk(np.full((50, D), 0.05), sequence=1, start_delay_s=0.05)
        support.wait_for(lambda: sum(np.allclose(v, 0.05) for _, v in robot.full_commands()) >= 5, 5.0,
                         what="the first chunk running")
        harness.publish_chunk(np.full((10, D), -0.05), sequence=2, start_delay_s=0.05)
        harness.wait_status(lambda s: s.state == HOLDING, 5.0, "HOLDING after the second chunk")
        vectors = [v for _, v in robot.full_commands()]

    firsts = [v[0] for v in vectors]
    switch = next(i for i, v in enumerate(firsts) if i > 0 and v < 0.05 - 1e-6 and firsts[i - 1] >= 0.05 - 1e-6)
    after = firsts[switch:]
    assert all(b <= a + 1e-9 for a, b in zip(after, after[1:])), "after preemption the old chunk never comes back"
    assert after[-1] == pytest.approx(-0.05, abs=1e-6)
    assert sum(np.isclose(firsts, 0.05, atol=1e-6)) < 45, "the first chunk's tail was executed despite preemption"
    assert_within_limits(vectors)


def test_ticks_follow_the_joint_states_when_told_to(ros_env, harness, tmp_path):
    """tick_on_joint_states: one command per joint-state update of both arms (25 Hz here), not the 50 Hz timer."""
    robot_rate = 25.0
    params = {"tick_on_joint_states": True}
    with running_executor(ros_env, tmp_path, params, robot_rate_hz=robot_rate) as (robot, node):
        wait_ready(harness, robot)
        # 25 rows, 0.5 s: the ticks come at the joint states' stamps, 40 ms apart, and an action is
        # never run late, so a chunk runs only if some tick falls within its rows' times. A 5-row chunk
        # (0.1 s) expired unexecuted whenever the loaded machine stalled the fake robot's joint states
        # for ~0.2 s right after it was sent: the executor then stayed IDLE and nothing was commanded.
        harness.publish_chunk(np.full((25, D), 0.01), sequence=1, start_delay_s=0.1)
        try:
            harness.wait_status(lambda s: s.state == HOLDING, 10.0, "HOLDING after the chunk")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the robot got {len(robot.full_commands())} commands") from None
        before, started = len(robot.full_commands()), time.monotonic()
        time.sleep(2.0)
        rate = (len(robot.full_commands()) - before) / (time.monotonic() - started)
        assert node.poll() is None
    assert 0.5 * robot_rate <= rate <= 1.3 * robot_rate, f"{rate:.1f} commands/s for joint states at {robot_rate} Hz"


def test_a_chunk_passed_over_by_stalled_joint_states_expires_and_says_so(ros_env, harness, tmp_path):
    """tick_on_joint_states with the robot's joint states stalled (SIGSTOP) across a whole 5-row chunk:
    no tick falls within its rows, so it expires unexecuted (never run late) and, having never
    commanded, the executor stays IDLE saying so; the next chunk runs."""
    import signal

    params = {"tick_on_joint_states": True}
    with running_executor(ros_env, tmp_path, params, robot_rate_hz=25.0) as (robot, node):
        wait_ready(harness, robot)
        robot.proc.send_signal(signal.SIGSTOP)
        try:
            harness.publish_chunk(np.full((5, D), 0.01), sequence=1, start_delay_s=0.1)  # rows due 0.1-0.18 s
            time.sleep(0.4)
        finally:
            robot.proc.send_signal(signal.SIGCONT)
        expired = harness.wait_status(lambda s: "expired unexecuted" in s.reason, 5.0, "the chunk's expiry")
        assert expired.state == IDLE and expired.last_sequence == 1 and "chunk 1" in expired.reason
        assert robot.full_commands() == [], "an action ran late"
        harness.publish_chunk(np.full((25, D), 0.01), sequence=2, start_delay_s=0.1)
        harness.wait_status(lambda s: s.state == HOLDING, 10.0, "HOLDING after the next chunk")
        assert node.poll() is None
    assert "chunk 1 expired unexecuted" in (tmp_path / "executor.log").read_text()


def test_critical_drift_halts_within_a_tick_and_resume_rearms(ros_env, harness, tmp_path):
    from std_srvs.srv import Trigger

    params = {"drift_delay_ticks": 2, "drift_window_ticks": 3}
    with running_executor(ros_env, tmp_path, params) as (robot, node):
        wait_ready(harness, robot)
        not_halted = harness.call(Trigger, "/executor_node/resume")
        assert not not_halted.success and "not halted" in not_halted.message
        harness.publish_chunk(np.full((150, D), 0.02), sequence=1, start_delay_s=0.05)
        harness.wait_status(lambda s: s.state == RUNNING, 5.0, "RUNNING")
        robot.set_offset(1.0)  # the arm no longer follows: ~1 rad off on every joint
        halted = harness.wait_status(lambda s: s.state == HALTED, 5.0, "HALTED")
        assert "CRITICAL" in halted.reason
        critical = next(msg for _, msg in harness.drifts if msg.level == 2)
        t_critical = critical.header.stamp.sec + critical.header.stamp.nanosec * 1e-9
        count_at_halt = len(robot.full_commands())
        time.sleep(0.4)
        halted_ticks = robot.full_commands()
        assert len(halted_ticks) == count_at_halt, "commands kept coming after the halt"
        late = [t for t, _ in halted_ticks if t > t_critical + 0.15]  # margin: delivery delay only
        assert not late, f"{len(late)} commands arrived after the CRITICAL tick"
        last_before_halt = halted_ticks[-1][1]
        still = harness.last_status()
        assert still.state == HALTED

        robot.set_offset(0.0)
        time.sleep(0.3)  # the executor sees the arm back where it was told to be
        reply = harness.call(Trigger, "/executor_node/resume")
        assert reply.success, reply.message
        harness.wait_status(lambda s: s.state == HOLDING, 5.0, "HOLDING after resume")
        support.wait_for(lambda: len(robot.full_commands()) > count_at_halt + 3, 5.0, what="commands after resume")
        resumed = robot.full_commands()[count_at_halt:]
    assert np.allclose(resumed[0][1], last_before_halt, atol=1e-6), "resume starts from the measured position"
    assert all(np.allclose(v, last_before_halt, atol=1e-6) for _, v in resumed), "holds after resume"


def test_bad_input_storm_never_moves_an_arm_wrongly(ros_env, harness, tmp_path):
    """1,025 malformed or hostile chunks interleaved with 25 valid ones (Interbotix backend)."""
    names = list(ALOHA_JOINT_NAMES)
    good = np.full((4, D), 0.01)

    def hostile(seq, now, last_valid):
        """41 bad chunks; each would be accepted but for the one thing wrong with it."""
        nan = good.copy(); nan[1, 3] = np.nan
        inf = good.copy(); inf[0, 0] = np.inf
        ninf = good.copy(); ninf[2, 13] = -np.inf
        cases = [
            dict(rows=nan), dict(rows=inf), dict(rows=ninf),
            dict(rows=np.full((4, D), 1e30)), dict(rows=good + 5.0), dict(rows=-good - 4.0),
            dict(rows=np.full((4, D), -3e38)),
            dict(rows=good[:, :13]),
            dict(rows=good, actions=good.reshape(-1)[:-1].astype(np.float32)),
            dict(rows=good, chunk_size=1000),
            dict(rows=good, action_dim=13),
            dict(rows=good, joint_names=names[:7] + ["left_knee"] + names[8:]),
            dict(rows=good, joint_names=names[::-1]),
            dict(rows=good, joint_names=names[:13]),
            dict(rows=good, joint_names=names + ["extra"]),
            dict(rows=good, joint_names=[]),
            dict(rows=np.zeros((0, D))),
            dict(rows=np.zeros((0, 0)), joint_names=[]),
            dict(rows=good, stamp_s=now - 5.0),
            dict(rows=good, stamp_s=now - 1e6),
            dict(rows=good, stamp_s=now + 5.0),
            dict(rows=good, stamp_s=now + 1e6),
            dict(rows=good, period_s=0.0),
            dict(rows=good, period_s=5.0),
            dict(rows=good, start_delay_s=30.0),
            dict(rows=good, sequence_override=last_valid),
            dict(rows=good, sequence_override=max(0, last_valid - 1)),
            dict(rows=good, sequence_override=0),
        ]
        while len(cases) < 41:
            cases.append(cases[len(cases) % 28])
        for i, case in enumerate(cases):
            case = dict(case)
            rows = case.pop("rows")
            sequence = case.pop("sequence_override", seq + i)
            yield rows, sequence, case

    values = [0.01 + 0.002 * k for k in range(25)]
    # The storm loads the machine: a joint-state stall must not be what keeps a valid chunk from running.
    with running_executor(ros_env, tmp_path, {"joint_state_timeout_s": 1.0}) as (robot, node):
        wait_ready(harness, robot)
        seq, sent_bad = 1, 0
        for value in values:
            seq += 100
            # 25 rows (500 ms): some rows of it still run even if a loaded machine delays it (the next
            # valid chunk replaces its tail).
            harness.publish_chunk(np.full((25, D), value), sequence=seq, start_delay_s=0.04)
            time.sleep(0.2)
            for rows, sequence, overrides in hostile(seq + 1, harness.now_s(), seq):
                harness.publish_chunk(rows, sequence=sequence, **overrides)
                sent_bad += 1
                time.sleep(0.002)
        try:
            status = harness.wait_status(lambda s: s.rejected_chunks >= sent_bad and s.state == HOLDING, 10.0,
                                         "every bad chunk rejected")
        finally:
            print("last status:", harness.last_status(), "sent bad:", sent_bad)
        assert node.poll() is None, "the executor died"
        vectors = [v for _, v in robot.full_commands()]

    assert sent_bad >= 1000 and status.rejected_chunks == sent_bad and status.last_sequence == seq
    assert_within_limits(vectors)
    for value in values:
        assert any(np.allclose(v, value, atol=1e-6) for v in vectors), f"valid chunk {value:.3f} never executed"
    allowed = np.array([0.0] + values)
    assert all(np.isclose(allowed, v[0], atol=1e-6).any() for v in vectors), "a command came from a bad chunk"


def test_checkpoint_stats_normalize_the_drift_and_commands_speak_the_driver(ros_env, harness, tmp_path):
    from oft_policy.calibration import DEFAULT_CALIBRATION, convention_record
    from oft_policy.normalization import NormalizationStats

    samples = np.random.default_rng(0).uniform(0.0, 0.5, size=(64, D))
    stats = NormalizationStats.fit(samples, samples, ALOHA_JOINT_NAMES, convention=convention_record(DEFAULT_CALIBRATION))
    stats_path = stats.save(tmp_path / "normalization.json")
    # 25 rows (0.25 s): a stall of the loaded test machine cannot expire the whole chunk unexecuted.
    rows = 0.02 * np.arange(1, 26)[:, None] * np.ones(D)
    # The ramp moves 2 % of the action range per tick: a loaded machine's fake robot lagging 8 ticks
    # reads as critical drift, which this test is not about (test_critical_drift_halts_within_a_tick... is).
    # Likewise a joint-state stall of a loaded machine would stop the commands (test_runtime_faults measures that).
    params = {"stats_path": str(stats_path), "drift_critical_threshold": 1.0, "joint_state_timeout_s": 1.0}
    with running_executor(ros_env, tmp_path, params) as (robot, node):
        wait_ready(harness, robot)
        harness.publish_chunk(rows, sequence=1, start_delay_s=0.05)
        harness.wait_status(lambda s: s.state == HOLDING, 5.0, "HOLDING")
        # The robot records what it receives on its own; the status can overtake its last commands.
        support.wait_for(lambda: any(v[0] == pytest.approx(0.5) for _, v in robot.full_commands()), 5.0,
                         what="the chunk's last row at the robot")
        records = robot.commands()
    assert {(r["kind"], r["name"]) for r in records} == {("group", "arm"), ("single", "gripper")}
    assert {len(r["values"]) for r in records if r["kind"] == "group"} == {6}
    assert not [r for r in records if r["refused"]], "the driver refused a command"
    grippers = [r["values"][0] for r in records if r["kind"] == "single"]
    # Gripper goals in the follower's own joint range (ALOHA 2): opening 0 -> 0.6197 rad.
    assert grippers[0] == pytest.approx(DEFAULT_CALIBRATION.follower_joint.closed, abs=1e-4)
    firsts = [v[0] for _, v in robot.full_commands()]
    assert firsts[0] == 0.0 and firsts[-1] == pytest.approx(0.5)
    assert "drift monitor normalizes with the action range" in (tmp_path / "executor.log").read_text()


def test_modes_are_set_and_confirmed_before_the_first_gripper_command(ros_env, harness, tmp_path):
    """The emulated driver starts its gripper in linear_position (metres); not one gripper command may
    reach it before the executor switched it to current_based_position and torque is on."""
    with running_executor(ros_env, tmp_path, initial=0.5) as (robot, node):
        wait_ready(harness, robot)
        harness.publish_chunk(0.5 + 0.01 * np.arange(1, 11)[:, None] * np.ones(D), sequence=1, start_delay_s=0.05)
        harness.wait_status(lambda s: s.state == HOLDING, 5.0, "HOLDING")
        records = robot.commands()
    singles = [r for r in records if r["kind"] == "single"]
    assert singles, "no gripper command"
    assert {r["mode"] for r in singles} == {"current_based_position"}
    assert {r["mode"] for r in records if r["kind"] == "group"} == {"position"}
    assert not [r for r in records if r["refused"]]
    log = (tmp_path / "executor.log").read_text()
    assert "driver set up: arm in position, gripper in current_based_position" in log


def test_a_driver_without_its_services_gets_no_command_and_the_status_says_why(ros_env, harness, tmp_path):
    params = {"driver_call_timeout_s": 1.0, "driver_retry_s": 30.0}
    with running_executor(ros_env, tmp_path, params, services=False) as (robot, node):
        status = harness.wait_status(lambda s: s.state == HALTED, 20.0, "HALTED for the missing driver services")
        harness.publish_chunk(0.01 * np.arange(1, 11)[:, None] * np.ones(D), sequence=1, start_delay_s=0.05)
        time.sleep(1.0)
        records = robot.commands()
        _, diagnostics = support.wait_for(lambda: harness.diagnostic("executor_node"), 5.0, what="diagnostics")
    assert not status.driver_ready
    assert "set_operating_modes" in status.reason and "not available" in status.reason
    assert "nothing is sent" in status.reason
    assert records == [], f"{len(records)} commands reached a driver that was never set up"
    assert diagnostics["driver_ready"] == "False" and "driver set-up failed" in diagnostics["driver"]


def test_statistics_in_another_convention_refuse_to_start(ros_env, tmp_path):
    from oft_policy.normalization import NormalizationStats

    samples = np.random.default_rng(0).uniform(-0.5, 0.5, size=(64, D))
    path = NormalizationStats.fit(samples, samples, ALOHA_JOINT_NAMES).save(tmp_path / "normalization.json")
    log = tmp_path / "executor.log"
    node = support.start_node(EXECUTOR, {"stats_path": str(path)}, ros_env, log)
    try:
        assert node.wait(30.0) == 1
    finally:
        support.stop_process(node)
    assert "records no 'convention'" in log.read_text()


@pytest.mark.parametrize(
    "params, message",
    [
        ({"backend": "ros2_control"}, "unknown backend"),
        ({"joint_names": ["a", "b", "c"]}, "do not split"),
        ({"chunk_policy": "average"}, "chunk_policy"),
        ({"stats_path": "no_such_dir/normalization.json"}, "normalization stats not found"),
        ({"position_limits_lower": [0.0] * D, "position_limits_upper": [0.0] * D}, "lower limit not below"),
        ({"calibration": "aloha3"}, "unknown calibration"),
    ],
)
def test_bad_configuration_refuses_to_start(ros_env, tmp_path, params, message):
    """Bad parameters: a clear error, exit code 1."""
    log = tmp_path / "executor.log"
    node = support.start_node(EXECUTOR, params, ros_env, log)
    try:
        assert node.wait(30.0) == 1
    finally:
        support.stop_process(node)
    assert message in log.read_text()


def test_executor_states_are_the_message_constants():
    """ExecutorState is the one definition the runtime uses; oft_msgs/ExecutorStatus carries the same values."""
    from oft_msgs.msg import ExecutorStatus

    from oft_policy.runtime import ExecutorState

    constants = {name: getattr(ExecutorStatus, name) for name in dir(ExecutorStatus)
                 if name.isupper() and isinstance(getattr(ExecutorStatus, name), int)}
    assert constants == {state.name: state.value for state in ExecutorState}
