"""policy_node (lifecycle) with a tiny checkpoint, the executor and a fake robot with cameras,
all real processes over DDS; transitions through the standard lifecycle services."""

import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_runtime_support as support  # noqa: E402

from oft_policy.calibration import DEFAULT_CALIBRATION, convention_record  # noqa: E402
from oft_policy.names import ALOHA_JOINT_NAMES, CAMERA_NAMES  # noqa: E402
from oft_policy.normalization import NormalizationStats  # noqa: E402

D = len(ALOHA_JOINT_NAMES)
CHUNK = 25
PERIOD = 0.02
POLICY = "oft_policy.nodes.policy_node"
EXECUTOR = "oft_policy.nodes.executor_node"
RUNNING, HOLDING = 1, 2
CONFIGURE, ACTIVATE, DEACTIVATE = (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE,
                                   Transition.TRANSITION_DEACTIVATE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random checkpoint whose actions stay well inside the vx300s limits."""
    import torch

    from oft_policy.testing.checkpoints import make_tiny_checkpoint

    torch.set_num_threads(1)
    samples = np.random.default_rng(0).uniform(-0.3, 0.3, size=(256, D))
    stats = NormalizationStats.fit(samples, samples, ALOHA_JOINT_NAMES, convention=convention_record(DEFAULT_CALIBRATION))
    return make_tiny_checkpoint(tmp_path_factory.mktemp("policy") / "ckpt", stats=stats, chunk_size=CHUNK,
                                control_period_s=PERIOD)


@pytest.fixture
def harness():
    with support.RosHarness() as h:
        yield h


def policy_params(checkpoint, **extra):
    params = {"checkpoint_path": str(checkpoint), "instruction": "fold the towel", "torch_threads": 1}
    params.update(extra)
    return params


def start(stack, proc):
    stack.callback(support.stop_process, proc)
    return proc


def bring_up(harness, node="policy_node"):
    assert harness.change_state(node, CONFIGURE), "configure failed"
    assert harness.change_state(node, ACTIVATE), "activate failed"


def test_configure_fails_with_a_clear_reason(ros_env, harness, tmp_path):
    log = tmp_path / "policy.log"
    with ExitStack() as stack:
        start(stack, support.start_node(POLICY, policy_params(tmp_path / "no_such_checkpoint"), ros_env, log))
        assert harness.change_state("policy_node", CONFIGURE) is False
        assert harness.lifecycle_state("policy_node") == "unconfigured"
        status, _ = support.wait_for(lambda: harness.diagnostic("policy_node"), 5.0, what="policy diagnostics")
        assert "configure failed" in status.message and "no_such_checkpoint" in status.message
    assert "configure failed" in log.read_text()


def test_publishes_fresh_chunks_only_while_active(ros_env, harness, tmp_path, checkpoint):
    with ExitStack() as stack:
        robot = support.FakeRobot(ros_env, tmp_path, cameras=CAMERA_NAMES)
        stack.callback(robot.stop)
        start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor.log"))
        start(stack, support.start_node(POLICY, policy_params(checkpoint), ros_env, tmp_path / "policy.log"))
        time.sleep(0.5)
        assert harness.chunk_count() == 0, "an unconfigured policy node published"
        bring_up(harness)
        support.wait_for(lambda: harness.chunk_count() >= 3, 30.0, what="three chunks")
        harness.wait_status(lambda s: s.state == RUNNING, 5.0, "executor RUNNING")
        assert harness.change_state("policy_node", DEACTIVATE)
        deactivated = time.time()
        count = harness.chunk_count()
        time.sleep(0.6)
        assert harness.chunk_count() == count, "chunks after deactivate"

        def counted():  # diagnostics come at 1 Hz: wait for one sent after the deactivation
            found = harness.diagnostic("policy_node", after=deactivated)
            return found if found and int(found[1]["chunks_published"]) == count else None

        status, values = support.wait_for(counted, 5.0, what="diagnostics counting every chunk")
        executor = harness.last_status()

    chunks = [msg for _, msg in harness.chunks]
    sequences = [c.sequence for c in chunks]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    for msg in chunks:
        assert list(msg.joint_names) == list(ALOHA_JOINT_NAMES)
        assert (msg.chunk_size, msg.action_dim, len(msg.actions)) == (CHUNK, D, CHUNK * D)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        start_time = msg.start_time.sec + msg.start_time.nanosec * 1e-9
        assert stamp <= start_time < stamp + 1.0 and msg.inference_ms > 0
        assert msg.model_id.startswith("oft-")
    assert executor.rejected_chunks == 0 and executor.last_sequence == sequences[-1]
    assert len(chunks) == count and float(values["inference_ms_p50"]) > 0
    from oft_policy.nodes.policy_node import STAGES

    stages = {stage: float(values[f"{stage}_ms_p50"]) for stage in STAGES}
    assert all(value >= 0 for value in stages.values()), stages  # every stage measured (NaN fails)
    assert stages["forward"] > 0 and stages["forward"] <= float(values["inference_ms_p99"]), stages
    assert status.message == "inactive"


def test_compressed_images(ros_env, harness, tmp_path, checkpoint):
    with ExitStack() as stack:
        robot = support.FakeRobot(ros_env, tmp_path, cameras=CAMERA_NAMES, compressed=True)
        stack.callback(robot.stop)
        start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor.log"))
        start(stack, support.start_node(POLICY, policy_params(checkpoint, compressed_images=True), ros_env,
                                        tmp_path / "policy.log"))
        bring_up(harness)
        support.wait_for(lambda: harness.chunk_count() >= 2, 30.0, what="chunks from compressed images")


def test_stale_inputs_publish_nothing_and_say_why(ros_env, harness, tmp_path, checkpoint):
    with ExitStack() as stack:
        robot = support.FakeRobot(ros_env, tmp_path)  # joint states, no cameras
        stack.callback(robot.stop)
        start(stack, support.start_node(EXECUTOR, {}, ros_env, tmp_path / "executor.log"))
        start(stack, support.start_node(POLICY, policy_params(checkpoint), ros_env, tmp_path / "policy.log"))
        bring_up(harness)

        def complains():
            found = harness.diagnostic("policy_node")
            return found if found and "not publishing" in found[0].message else None

        status, values = support.wait_for(complains, 10.0, what="a stale-input diagnostic")
        assert "cam_high" in status.message and int(values["skipped_stale_or_bad_input"]) > 0
        assert harness.chunk_count() == 0
