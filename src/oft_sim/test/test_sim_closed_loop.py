"""Closed loop through real processes: aloha_sim, policy_node and executor_node on sim time.

A tiny checkpoint whose normalization stats put its actions away from the start pose
makes the executor drive the arms; the test checks that chunks were computed from the
simulator's images, that the commands reached the simulator and that the measured
joints moved toward what the policy asked for.
"""

import numpy as np
import pytest

from oft_policy.calibration import DEFAULT_CALIBRATION, convention_record
from oft_policy import names
from oft_policy.normalization import NormalizationStats
from oft_sim.closed_loop import ClosedLoop, LoopSettings
from oft_sim.simulator import AlohaSim

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from oft_policy.testing.checkpoints import make_tiny_checkpoint

    sim = AlohaSim(cameras=())
    sim.reset(0)
    start = sim.joint_positions()
    # Proprio around the start pose; actions centred 0.3 rad away on some arm joints, over a
    # range as wide as a task's (the drift monitor measures tracking lag against that range).
    rng = np.random.default_rng(0)
    proprio = start + 0.05 * rng.standard_normal((256, 14))
    offset = np.tile([0.3, 0.3, -0.3, 0.0, 0.3, 0.0, 0.0], 2)
    actions = start + offset + rng.uniform(-0.4, 0.4, (256, 14))
    stats = NormalizationStats.fit(proprio, actions, names.ALOHA_JOINT_NAMES, action_scheme="min_max",
                                   convention=convention_record(DEFAULT_CALIBRATION))
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", chunk_size=10, stats=stats), start


def test_policy_drives_the_simulated_arms(checkpoint, tmp_path):
    path, start = checkpoint
    settings = LoopSettings(
        checkpoint=path, image_size=(48, 64), max_steps=100, log_dir=tmp_path / "logs", episode_timeout_s=120.0
    )
    loop = ClosedLoop(settings)
    from oft_msgs.msg import ActionChunk
    from sensor_msgs.msg import JointState
    from interbotix_xs_msgs.msg import JointGroupCommand

    from oft_policy.qos import SENSOR_QOS, STATUS_QOS

    chunks, commands, joints = [], [], []
    loop.node.create_subscription(ActionChunk, names.ACTION_CHUNK_TOPIC, chunks.append, STATUS_QOS)
    loop.node.create_subscription(JointGroupCommand, "/follower_left/commands/joint_group", commands.append, STATUS_QOS)
    loop.node.create_subscription(JointState, names.FOLLOWER_JOINT_STATE_TOPICS[0], joints.append, SENSOR_QOS)
    try:
        loop.start()
        outcome = loop.run_episode(seed=1000)
    finally:
        loop.close()

    assert not outcome.halted, outcome
    assert outcome.chunks >= 2 and outcome.steps >= 100, outcome
    assert chunks and commands and joints
    assert list(chunks[0].joint_names) == list(names.ALOHA_JOINT_NAMES)
    # Every chunk was computed from an observation the simulator published (its sim-time stamps).
    assert all(c.header.stamp.sec * 10**9 + c.header.stamp.nanosec >= 10**9 for c in chunks)

    # The executor's first command holds the measured start pose; later ones head for the chunk.
    assert all(c.name == "arm" and len(c.cmd) == 6 for c in commands)
    assert np.allclose(commands[0].cmd, start[:6], atol=0.02)
    # What the policy asked for over the episode (every chunk's rows), on joints it asked to move clearly.
    target = np.concatenate([np.array(c.actions).reshape(c.chunk_size, c.action_dim)[:, :6] for c in chunks]).mean(axis=0)
    moving = np.abs(target - start[:6]) > 0.15
    assert moving.any(), "the policy asked for no motion; the test checkpoint is wrong"
    final = np.array(joints[-1].position)[:6]
    travelled = (final - start[:6])[moving]
    wanted = (target - start[:6])[moving]
    # Measured joints moved by at least half of the way toward the policy's target, in its direction.
    assert np.all(np.sign(travelled) == np.sign(wanted)), (travelled, wanted)
    assert np.all(np.abs(travelled) > 0.5 * np.abs(wanted)), (travelled, wanted)


def test_strict_lockstep_reruns_the_same_episode_exactly(checkpoint, tmp_path):
    """Sim time holds wherever the policy or the executor has not answered yet, so a rerun of a seed
    sees the same images at the same steps, however the two runs were scheduled."""
    path, _ = checkpoint
    settings = LoopSettings(
        checkpoint=path, image_size=(48, 64), max_steps=60, execute_steps=7, log_dir=tmp_path / "logs",
        episode_timeout_s=120.0,
    )
    loop = ClosedLoop(settings)
    runs = []
    try:
        loop.start()
        for _ in range(2):
            loop.record.frames.clear()
            outcome = loop.run_episode(seed=1001, record_video=True)
            start = min(loop.record.frames)
            runs.append((outcome, {(t - start) // 20_000_000: f["cam_high"] for t, f in loop.record.frames.items()
                                   if "cam_high" in f}))
    finally:
        loop.close()

    (first, frames_a), (second, frames_b) = runs
    assert (first.steps, first.max_reward) == (second.steps, second.max_reward)
    common = sorted(set(frames_a) & set(frames_b))
    assert len(common) >= 40, f"the observer saw too few frames of both runs: {len(common)}"
    moved = [step for step in common if not np.array_equal(frames_a[step], frames_a[common[0]])]
    assert moved, "the arms never moved: the comparison would prove nothing"
    differing = [step for step in common if not np.array_equal(frames_a[step], frames_b[step])]
    assert not differing, f"the rerun differs from step {differing[0]} on"


def test_inference_delay_keeps_the_arm_on_its_held_actions_until_the_chunk_may_run(checkpoint, tmp_path):
    """Four ticks of inference delay through the real nodes: each chunk is timed from its observation,
    starts four ticks after it with its three overdue rows cut, and the executor accepts every one."""
    path, _ = checkpoint
    settings = LoopSettings(
        checkpoint=path, image_size=(48, 64), max_steps=40, execute_steps=7, inference_delay_steps=4,
        log_dir=tmp_path / "logs", episode_timeout_s=120.0,
    )
    loop = ClosedLoop(settings)
    from oft_msgs.msg import ExecutorStatus

    from oft_policy.qos import STATUS_QOS

    statuses = []
    loop.node.create_subscription(ExecutorStatus, names.EXECUTOR_STATUS_TOPIC, statuses.append, STATUS_QOS)
    try:
        loop.start()
        outcome = loop.run_episode(seed=1002)
        loop.spin(0.5)
    finally:
        loop.close()
    chunks = loop.record.chunks[-1]
    assert outcome.chunks >= 4 and len(chunks) == outcome.chunks, outcome
    assert all(c.chunk_size == 10 - 3 for c in chunks)
    assert all(abs(c.start_time_s - (c.stamp_s + 4 * 0.02)) < 1e-6 for c in chunks)
    assert statuses and max(s.rejected_chunks for s in statuses) == 0, statuses[-1].reason
    seams = loop.record.seams(names.ALOHA_JOINT_NAMES, "replace", 0.5)
    assert seams["seams"] >= 3 and seams["within_chunk_step_mrad"]["p99"] is not None


def test_each_episode_gets_the_instruction_naming_its_target(checkpoint, tmp_path):
    """handover_by_color: the closed loop tells the policy node each seed's instruction (a runtime parameter
    it publishes on /oft/instruction) and the simulator the object it names; swapping names the other."""
    path, _ = checkpoint
    settings = LoopSettings(checkpoint=path, task="handover_by_color", image_size=(48, 64), max_steps=10,
                            execute_steps=7, log_dir=tmp_path / "logs", episode_timeout_s=120.0)
    loop = ClosedLoop(settings)
    from std_msgs.msg import String

    from oft_policy.qos import INSTRUCTION_QOS

    told = []
    loop.node.create_subscription(String, names.INSTRUCTION_TOPIC, lambda m: told.append(m.data), INSTRUCTION_QOS)
    seeds = [s for s in range(1000, 1040) if loop.episode_target(s) == "red"][:1] + \
        [s for s in range(1000, 1040) if loop.episode_target(s) == "blue"][:1]
    try:
        loop.start()
        outcomes = [loop.run_episode(seed) for seed in seeds]
        outcomes.append(loop.run_episode(seeds[0], target=loop.episode_target(seeds[0], swap=True)))
        loop.spin(0.5)
    finally:
        loop.close()
    assert [o.target for o in outcomes] == ["red", "blue", "blue"]
    assert [o.instruction for o in outcomes] == [
        f"pick up the {color} cube with the right arm and hand it over to the left arm" for color in ("red", "blue", "blue")]
    assert told[-1] == outcomes[-1].instruction and outcomes[0].instruction in told
    assert all(o.chunks >= 1 for o in outcomes)
