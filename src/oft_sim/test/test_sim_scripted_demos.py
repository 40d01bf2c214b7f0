"""scripted_demos end to end: real aloha_sim process, ROS commands, real rosbag2 files."""

import json
import subprocess

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from oft_policy import names
from oft_policy.calibration import DEFAULT_CALIBRATION, leader_action_arm
from oft_sim.interface import SUCCESS_TOPIC
from oft_sim.scripted_policy import scripted_trajectory
from oft_sim.simulator import AlohaSim

pytestmark = pytest.mark.timeout(240)


def run_demos(console, ros_env, out, *extra):
    argv = console("oft_sim", "scripted_demos", "oft_sim.cli.scripted_demos") + [
        "--episodes", "1", "--out", str(out), "--first-seed", "3",
        "--image-height", "32", "--image-width", "32", *extra,
    ]
    return subprocess.run(argv, env=ros_env, capture_output=True, text=True, timeout=200)


def test_successful_demo_is_recorded_as_a_rosbag(console, ros_env, tmp_path):
    out = tmp_path / "demos"
    done = run_demos(console, ros_env, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 episodes succeeded and were kept" in done.stdout
    summary = json.loads((out / "demos.json").read_text())
    assert summary["successful"] == 1 and summary["episodes"][0]["seed"] == 3

    planner = AlohaSim("transfer_cube", cameras=())
    planner.reset(3)
    planned = scripted_trajectory(planner)
    with AnyReader([out / "episode_000"]) as reader:
        topics = {c.topic: c for c in reader.connections}
        # Recorded as on a real ALOHA: realsense cameras, follower and leader driver joint states.
        expected = set(names.CAMERA_TOPICS) | set(names.FOLLOWER_JOINT_STATE_TOPICS) | set(names.LEADER_JOINT_STATE_TOPICS)
        assert expected <= set(topics)
        leaders = []
        for side, topic in enumerate(names.LEADER_JOINT_STATE_TOPICS):
            messages = [(stamp, reader.deserialize(raw, c.msgtype)) for c, stamp, raw in
                        reader.messages(connections=[topics[topic]])]
            assert all(list(m.name) == list(names.DRIVER_JOINT_STATE_NAMES) for _, m in messages)
            leaders.append([(stamp, leader_action_arm(m.name, m.position, DEFAULT_CALIBRATION)) for stamp, m in messages])
        assert len(leaders[0]) == len(leaders[1]) == len(planned)
        actions = np.array([np.r_[left, right] for (_, left), (_, right) in zip(*leaders)])
        assert np.allclose(actions, planned, atol=1e-9)  # the demonstrated actions, in order, through the calibration
        stamps = np.array([s for s, _ in leaders[0]])
        assert np.all(np.diff(stamps) == 20_000_000)  # one action per 20 ms of sim time
        image_conn = topics[names.CAMERA_TOPICS[0]]
        images = list(reader.messages(connections=[image_conn]))
        assert len(images) >= len(planned)
        first = reader.deserialize(images[0][2], image_conn.msgtype)
        assert (first.height, first.width, first.encoding) == (32, 32, "rgb8")
        # Filed under the sim time they were taken at (the clock goes out before the sensors),
        # so a by-receive-time export pairs each observation with the action taken from it.
        headers = [reader.deserialize(raw, c.msgtype).header.stamp for c, _, raw in images]
        filed = [stamp for _, stamp, _ in images]
        assert [h.sec * 10**9 + h.nanosec for h in headers] == filed
        assert set(stamps) <= set(filed)
        successes = [reader.deserialize(raw, c.msgtype).data for c, _, raw in reader.messages(connections=[topics[SUCCESS_TOPIC]])]
        assert successes[-1] is True and successes[0] is False


def test_failed_demo_is_discarded_and_counted(console, ros_env, tmp_path):
    out = tmp_path / "short"
    done = run_demos(console, ros_env, out, "--steps", "60")  # stops long before the handover
    assert done.returncode == 1
    assert "0 of 1 episodes succeeded" in done.stdout
    assert not list(out.glob("episode_*"))
    assert json.loads((out / "demos.json").read_text())["episodes"][0]["bag"] is None


def test_demos_of_a_task_that_names_its_object_record_each_instruction(console, ros_env, tmp_path):
    """handover_by_color: each episode's bag carries the instruction naming its cube, and export keeps it."""
    from oft_sim.tasks import get_task
    from oft_training.dataset import EpisodeTable
    from oft_training.exporter import ExportOptions, export

    out = tmp_path / "demos"
    done = run_demos(console, ros_env, out, "--task", "handover_by_color")
    assert done.returncode == 0, done.stdout + done.stderr
    episode = json.loads((out / "demos.json").read_text())["episodes"][0]
    task = get_task("handover_by_color")
    assert episode["target"] == task.default_target(3) and episode["instruction"] == task.instruction(episode["target"])
    export([out / "episode_000"], tmp_path / "dataset", ExportOptions(min_frames=20), progress=False)
    assert EpisodeTable(tmp_path / "dataset").tasks[0] == episode["instruction"]
