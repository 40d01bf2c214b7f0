"""The record preset end to end: simulator -> record.launch.py's recorder -> fit_normalizer and export.

The recorder command is the one record.launch.py and `bringup record` run
where rosbag2 is absent (taken from the description, not re-typed here). The
simulator stands in for the follower arms and cameras; a small teleop
stand-in publishes the leader arms (following the followers, as a leader arm
does during teleoperation). The bag must then be accepted by `fit_normalizer`
and `export` given only paths (and export's required instruction).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from oft_bringup import system
from oft_bringup.node_interface import executable_path
from oft_bringup.starting import process_argv
from oft_policy import names

BRINGUP = Path(__file__).resolve().parents[1]
RECORDED_TOPICS = {*names.CAMERA_TOPICS, *names.FOLLOWER_JOINT_STATE_TOPICS, *names.LEADER_JOINT_STATE_TOPICS,
                   names.INSTRUCTION_TOPIC}
PUBLISHED_TOPICS = RECORDED_TOPICS - {names.INSTRUCTION_TOPIC}  # what the simulator publishes (no instruction here)
RECORD_SECONDS = 6.0


def _recorder(output: Path, use_rosbag2: bool, use_sim_time: bool, scratch: Path, **given):
    """The one recorder the record system starts for these arguments."""
    arguments = {"output": str(output), "use_rosbag2": str(use_rosbag2).lower(),
                 "use_sim_time": str(use_sim_time).lower(), **given}
    started = system.plan(system.record(), arguments, str(scratch))
    assert not started.nodes and not started.includes
    assert len(started.processes) == 1, f"{len(started.processes)} recorders would run for {arguments}"
    return started.processes[0]


def _recorder_command(output: Path, use_rosbag2: bool, use_sim_time: bool, scratch: Path):
    return process_argv(_recorder(output, use_rosbag2, use_sim_time, scratch))


def test_both_recorders_record_the_same_topics(tmp_path):
    for use_sim_time in (False, True):
        rosbag2 = _recorder_command(tmp_path / "bag", True, use_sim_time, tmp_path)
        fallback = _recorder_command(tmp_path / "bag", False, use_sim_time, tmp_path)
        assert rosbag2[:3] == ["ros2", "bag", "record"] and Path(fallback[0]).name == "record"
        assert rosbag2[rosbag2.index("-s") + 1] == "mcap" and fallback[fallback.index("--storage") + 1] == "mcap"
        assert ("--use-sim-time" in rosbag2) == use_sim_time == ("--use-sim-time" in fallback)
        assert rosbag2[rosbag2.index("-o") + 1] == fallback[fallback.index("--out") + 1] == str(tmp_path / "bag")
        assert set(rosbag2[rosbag2.index("-o") + 2:]) == RECORDED_TOPICS
        assert fallback[fallback.index("--camera-topic-pattern") + 1] == names.CAMERA_TOPIC_PATTERN
        # The fallback records its default set: cameras, followers and leaders (checked in a bag below).
        assert "--no-leaders" not in fallback and "--cameras" not in fallback
    overrides = Path(rosbag2[rosbag2.index("--qos-profile-overrides-path") + 1])
    assert overrides == Path(system.config_file(system.QOS_OVERRIDES_FILE))
    qos = yaml.safe_load(overrides.read_text())
    assert set(qos) == set(names.CAMERA_TOPICS)
    assert all(profile["reliability"] == "best_effort" for profile in qos.values())


def test_another_camera_pattern_records_its_topics_with_a_made_overrides_file(tmp_path):
    pattern = "/{camera}/image_raw"
    recorder = _recorder(tmp_path / "bag", True, False, tmp_path / "scratch", camera_topic_pattern=pattern)
    argv = process_argv(recorder)
    topics = names.camera_topics(pattern=pattern)
    assert set(argv[argv.index("-o") + 2:]) == {*topics, *names.FOLLOWER_JOINT_STATE_TOPICS, *names.LEADER_JOINT_STATE_TOPICS,
                                                 names.INSTRUCTION_TOPIC}
    overrides = argv[argv.index("--qos-profile-overrides-path") + 1]
    ((path, text),) = recorder.writes
    assert path == overrides and Path(path).parent == tmp_path / "scratch"
    assert yaml.safe_load(text) == system.qos_overrides(pattern) and set(yaml.safe_load(text)) == set(topics)
    fallback = process_argv(_recorder(tmp_path / "bag", False, False, tmp_path, camera_topic_pattern=pattern))
    assert fallback[fallback.index("--camera-topic-pattern") + 1] == pattern


class _TeleopLeader:
    """Publishes leader joint states that follow the follower arms with a small offset, like teleop."""

    def __init__(self, node):
        from sensor_msgs.msg import JointState

        from oft_policy.qos import SENSOR_QOS

        from rosgraph_msgs.msg import Clock

        self.published = 0
        self.sim_time_s = 0.0
        node.create_subscription(Clock, "/clock", self._on_clock, 10)
        for follower, leader in zip(names.FOLLOWER_JOINT_STATE_TOPICS, names.LEADER_JOINT_STATE_TOPICS):
            publisher = node.create_publisher(JointState, leader, SENSOR_QOS)
            node.create_subscription(JointState, follower, self._mirror(publisher), SENSOR_QOS)

    def _on_clock(self, msg):
        self.sim_time_s = msg.clock.sec + msg.clock.nanosec * 1e-9

    def _mirror(self, publisher):
        from oft_policy.calibration import DEFAULT_CALIBRATION as rig

        def on_state(msg):
            phase = time.monotonic()
            position = [p + 0.05 * math.sin(phase + i) for i, p in enumerate(msg.position)]
            # A leader's gripper joint has its own range: the follower's opening, in leader radians.
            gripper = msg.name.index("gripper")
            position[gripper] = float(rig.leader_gripper_joint(rig.follower_joint.normalize(msg.position[gripper])))
            msg.position = position
            publisher.publish(msg)
            self.published += 1

        return on_state


def _stop(process: subprocess.Popen, sig=signal.SIGINT, timeout=20.0):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
def test_record_preset_gives_a_bag_fit_normalizer_and_export_accept(tmp_path, ros_env, spinning_node):
    bag = tmp_path / "episode_000"
    # Sim time: the bag's stamps then follow the simulator's lockstep clock, so a slow, loaded
    # machine cannot open gaps in the recording (a real robot records on wall time).
    record_cmd = _recorder_command(bag, use_rosbag2=False, use_sim_time=True, scratch=tmp_path)
    sim_cmd = [
        str(executable_path("oft_sim", "aloha_sim")), "--ros-args",
        "--params-file", str(BRINGUP / "config" / "aloha_sim.yaml"),
        "-p", "wait_for_chunks:=false",  # no policy here: step on the lockstep timeout
    ]
    sim_log = tmp_path / "aloha_sim.log"
    sim_output = sim_log.open("w")
    sim = subprocess.Popen(sim_cmd, env=ros_env, stdout=sim_output, stderr=subprocess.STDOUT)
    recorder = None
    record_log = ""
    try:
        leader = _TeleopLeader(spinning_node("teleop_leader_stand_in"))
        deadline = time.monotonic() + 60
        while leader.published < 10:
            assert sim.poll() is None, f"aloha_sim exited: {sim_log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the simulator published no joint states within 60 s"
            time.sleep(0.2)
        recorder = subprocess.Popen(record_cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(RECORD_SECONDS)
        # At least 1.5 s of sim time on the record (75 frames at 50 Hz), however slowly a loaded machine steps.
        until = leader.sim_time_s + 1.5
        deadline = time.monotonic() + 120
        while leader.sim_time_s < until and time.monotonic() < deadline:
            time.sleep(0.2)
        _stop(recorder)
        record_log = recorder.stdout.read()
        assert recorder.returncode == 0, f"record failed:\n{record_log[-2000:]}"
    finally:
        if recorder is not None:
            _stop(recorder, signal.SIGKILL)
        _stop(sim)
        sim_output.close()

    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in metadata["topics_with_message_count"]}
    logs = f"record:\n{record_log[-1500:]}\naloha_sim:\n{sim_log.read_text()[-1500:]}"
    assert set(counts) == PUBLISHED_TOPICS, logs
    assert all(count > 0 for count in counts.values()), logs

    env = ros_env
    stats_path = tmp_path / "stats.json"
    fit = subprocess.run(
        [str(executable_path("oft_training", "fit_normalizer")), "--bags", str(bag), "--out", str(stats_path)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert fit.returncode == 0, f"fit_normalizer refused the bag:\n{fit.stdout}\n{fit.stderr}"
    from oft_policy.normalization import NormalizationStats

    stats = NormalizationStats.load(stats_path)
    assert list(stats.joint_names) == list(names.ALOHA_JOINT_NAMES)

    dataset = tmp_path / "dataset"
    export = subprocess.run(
        [str(executable_path("oft_training", "export")), "--bags", str(bag), "--out", str(dataset),
         "--instruction", "transfer the cube"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert export.returncode == 0, f"export refused the bag:\n{export.stdout}\n{export.stderr}"
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 1 and info["total_frames"] >= 25, info
