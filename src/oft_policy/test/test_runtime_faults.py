"""Faults while the arm runs, with real processes on DDS (loopback): what each does, measured.

The fake robot (the emulated xs drivers and cameras) takes fault lines on stdin: its
cameras freeze (the same frame, its old stamp) or stop, its joint states stop. The
executor and the policy node are killed with SIGKILL. Each test records its figures
for docs/reliability.md (oft_policy.testing.reliability).
"""

import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_runtime_support as support  # noqa: E402
from test_runtime_policy_node import (  # noqa: E402
    EXECUTOR, HOLDING, POLICY, RUNNING, bring_up, checkpoint, policy_params, start)

from oft_policy.names import ALOHA_JOINT_NAMES, CAMERA_NAMES  # noqa: E402
from oft_policy.testing.reliability import record_outcome  # noqa: E402

__all__ = ["checkpoint"]  # the fixture, shared with the policy node's tests
IDLE = 0
PERIOD = 0.02
MAX_INPUT_AGE_S = 0.5  # policy_node's default max_input_age_s
JOINT_STATE_TIMEOUT_S = 0.2  # executor_node's default joint_state_timeout_s
EXECUTOR_TIMEOUT_S = 1.0  # policy_node's default executor_timeout_s


@pytest.fixture
def harness():
    with support.RosHarness() as h:
        yield h


def _chunk_times(harness, after: float) -> list:
    """(when the policy made it, the age of its observation then) of each chunk made after ``after``.

    Made: its start_time, which the policy node sets to its clock at publishing (start_time_offset_s 0);
    the harness's receive time would also count this loaded machine's delivery delays."""
    def seconds(stamp):
        return stamp.sec + stamp.nanosec * 1e-9

    with harness.lock:
        made = [(seconds(msg.start_time), seconds(msg.header.stamp)) for _, msg in harness.chunks]
    return [(t, t - observed) for t, observed in made if t > after]


def _running_system(stack, harness, ros_env, tmp_path, checkpoint):
    """Fake robot with cameras, executor and an active policy node, RUNNING: (robot, executor, policy)."""
    robot = support.FakeRobot(ros_env, tmp_path, cameras=CAMERA_NAMES)
    stack.callback(robot.stop)
    executor = start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor1.log"))
    policy = start(stack, support.start_node(POLICY, policy_params(checkpoint), ros_env, tmp_path / "policy1.log"))
    bring_up(harness)
    support.wait_for(lambda: harness.chunk_count() >= 3, 30.0, what="chunks")
    harness.wait_status(lambda s: s.state == RUNNING, 10.0, "RUNNING")
    return robot, executor, policy


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["frozen", "stopped"])
def test_a_frozen_or_silent_camera_makes_no_chunk_and_the_executor_holds(ros_env, harness, tmp_path, checkpoint, fault):
    with ExitStack() as stack:
        robot, _, _ = _running_system(stack, harness, ros_env, tmp_path, checkpoint)
        faulted = time.time()
        robot.control(f"cameras {fault}")
        holding = harness.wait_status(lambda s: s.state == HOLDING, 10.0, f"HOLDING with cameras {fault}")
        to_holding = time.time() - faulted

        def says_why():
            found = harness.diagnostic("policy_node")
            return found if found and "cam_high" in found[0].message and "not publishing" in found[0].message else None

        status, _ = support.wait_for(says_why, 10.0, what="the policy saying why it publishes nothing")
        time.sleep(1.0)  # a while longer: still nothing
        after = _chunk_times(harness, faulted)
        stale = [age for _, age in after if age > MAX_INPUT_AGE_S]
        assert not stale, f"chunks made from inputs {stale} s old"
        assert all(t < faulted + MAX_INPUT_AGE_S + 0.5 for t, _ in after), after
        assert holding.queue_depth == 0

        robot.control("cameras live")
        before = harness.chunk_count()
        harness.wait_status(lambda s: s.state == RUNNING, 20.0, "RUNNING again with live cameras")
        assert harness.chunk_count() > before
    record_outcome(
        f"Camera {'repeats a frozen frame (same stamp)' if fault == 'frozen' else 'stops publishing'}",
        "no chunk from stale inputs; the executor runs out its queue and holds; the policy says which camera; "
        "chunks resume with live frames",
        chunks_from_stale_inputs=len(stale), chunks_after_fault=len(after),
        seconds_to_holding=round(to_holding, 2), policy_message=status.message)


@pytest.mark.slow
def test_when_joint_states_stop_the_executor_stops_commanding_and_says_why(ros_env, harness, tmp_path):
    with ExitStack() as stack:
        robot = support.FakeRobot(ros_env, tmp_path)
        stack.callback(robot.stop)
        start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor.log"))
        support.wait_for(robot.commands_matched, 30.0, what="the executor's command publishers")
        harness.wait_status(lambda s: s.driver_ready, 30.0, "driver set up")
        harness.publish_chunk(np.zeros((200, len(ALOHA_JOINT_NAMES))), sequence=1)  # 4 s of commands
        harness.wait_status(lambda s: s.state == RUNNING, 10.0, "RUNNING")
        time.sleep(0.5)
        stopped = time.time()
        robot.control("joint_states stopped")
        idle = harness.wait_status(lambda s: s.state == IDLE and "no joint states" in s.reason, 5.0,
                                   "IDLE for want of joint states")
        time.sleep(1.0)
        commands = robot.full_commands()
        after = [t for t, _ in commands if t > stopped]
        ticks_after = len(after)
        last_after = max(after) - stopped if after else 0.0
        # The timeout is 10 ticks; the rest is the stop line's way to the robot and delivery on a loaded machine.
        assert ticks_after <= JOINT_STATE_TIMEOUT_S / PERIOD + 10, (ticks_after, last_after)
        assert len([t for t, _ in robot.full_commands() if t > stopped + 1.0]) == 0

        robot.control("joint_states live")
        resumed = time.time()
        harness.wait_status(lambda s: s.state == RUNNING, 5.0, "RUNNING once joint states return")
        support.wait_for(lambda: any(t > resumed for t, _ in robot.full_commands()), 5.0, what="commands again")
    record_outcome(
        "Joint states stop",
        "the executor sends nothing once the newest state is 0.2 s old (never commands without feedback), "
        "says why in its status, and resumes from the measured position when states return",
        commands_after_states_stopped=ticks_after, last_command_after_s=round(last_after, 3),
        timeout_ticks=int(JOINT_STATE_TIMEOUT_S / PERIOD), status_reason=idle.reason)


@pytest.mark.slow
def test_when_the_executor_dies_the_policy_stops_publishing_and_resumes_with_a_new_one(
        ros_env, harness, tmp_path, checkpoint):
    with ExitStack() as stack:
        _, executor, _ = _running_system(stack, harness, ros_env, tmp_path, checkpoint)
        killed = time.time()
        executor.send_signal(signal.SIGKILL)
        executor.wait(5.0)

        def says_why():
            found = harness.diagnostic("policy_node")
            return found if found and "no executor status" in found[0].message else None

        status, _ = support.wait_for(says_why, 10.0, what="the policy noticing the executor is gone")
        time.sleep(1.5)
        after = [t - killed for t, _ in _chunk_times(harness, killed)]
        assert all(t < EXECUTOR_TIMEOUT_S + 1.0 for t in after), f"chunks published {after} s after the kill"

        before = harness.chunk_count()
        returned = time.time()
        start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor2.log",
                                        ["-r", "__node:=executor_node_2"]))
        harness.wait_status(lambda s: s.state == RUNNING and harness.chunk_count() > before, 30.0,
                            "RUNNING with the new executor")
        to_resume = time.time() - returned
    record_outcome(
        "Executor killed (SIGKILL)",
        "the policy notices the silent status, publishes nothing and says why; it resumes when an executor returns",
        chunks_after_kill=len(after), last_chunk_after_kill_s=round(max(after), 2) if after else 0.0,
        executor_timeout_s=EXECUTOR_TIMEOUT_S, seconds_to_resume=round(to_resume, 2),
        policy_message=status.message)


@pytest.mark.slow
def test_executor_holds_when_the_policy_dies_and_resumes_with_a_new_one(ros_env, harness, tmp_path, checkpoint):
    with ExitStack() as stack:
        robot, _, first = _running_system(stack, harness, ros_env, tmp_path, checkpoint)
        killed = time.time()
        first.send_signal(signal.SIGKILL)
        first.wait(5.0)
        holding = harness.wait_status(lambda s: s.state == HOLDING, 5.0, "HOLDING after the policy died")
        to_holding = time.time() - killed
        assert holding.queue_depth == 0 and "queue ran dry" in holding.reason
        last = harness.chunks[-1][1]
        start_s = last.start_time.sec + last.start_time.nanosec * 1e-9
        last_due = start_s + (last.chunk_size - 1) * PERIOD
        # Rows are never executed after their tick, so every command from then on is the hold;
        # the margin only covers the delivery delay of the command itself on a loaded machine.
        # Waited for, not slept on: the fake robot's record of them can lag on a loaded machine.
        def held_commands():
            held = [v for t, v in robot.full_commands() if t > last_due + PERIOD + 0.15]
            return held if len(held) >= 5 else None

        held = support.wait_for(held_commands, 10.0, what="5 commands after the queue ran dry")
        moving = [v for v in held if not np.array_equal(v, held[0])]
        assert not moving, "the executor must hold one position from the tick after the queue runs dry"
        before = harness.chunk_count()
        last_sequence = holding.last_sequence

        # A new name: the killed node's services may linger in discovery for a while.
        start(stack, support.start_node(POLICY, policy_params(checkpoint), ros_env, tmp_path / "policy2.log",
                                        ["-r", "__node:=policy_node_2"]))
        bring_up(harness, "policy_node_2")
        restarted = time.time()
        resumed = harness.wait_status(lambda s: s.state == RUNNING and s.last_sequence > last_sequence, 30.0,
                                      "RUNNING with the new policy's chunks")
        assert harness.chunk_count() > before and resumed.rejected_chunks == 0
    record_outcome(
        "Policy node killed mid-episode (SIGKILL)",
        "the executor runs out its valid queue, then holds one position; status HOLDING with the reason; "
        "a restarted policy node resumes the episode",
        seconds_to_holding=round(to_holding, 2), moving_commands_after_last_action_plus_one_tick=len(moving),
        status_reason=holding.reason, seconds_to_resume=round(time.time() - restarted, 2))
