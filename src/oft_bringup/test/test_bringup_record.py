"""The record preset end to end: simulator -> record.launch.py's recorder -> fit_normalizer and export.

The recorder command is the one record.launch.py runs where rosbag2 is absent
(read from the file, not re-typed here). The simulator stands in for the
follower arms and cameras; a small teleop stand-in publishes the leader arms
(following the followers, as a leader arm does during teleoperation). The bag
must then be accepted by `fit_normalizer` and `export` given only paths (and
export's required instruction).
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from oft_bringup.static_launch import PackageExecutable, condition_holds, read_launch_file, resolve, resolve_text
from oft_bringup.node_interface import executable_path
from oft_policy import names

BRINGUP = Path(__file__).resolve().parents[1]
RECORD_LAUNCH = BRINGUP / "launch" / "record.launch.py"
RECORDED_TOPICS = {*names.CAMERA_TOPICS, *names.FOLLOWER_JOINT_STATE_TOPICS, *names.LEADER_JOINT_STATE_TOPICS}
RECORD_SECONDS = 6.0


def _recorder_command(output: Path, use_rosbag2: bool, use_sim_time: bool):
    """The one command record.launch.py runs for these arguments, resolved as launch would."""
    launch_file = read_launch_file(RECORD_LAUNCH)
    assert not launch_file.problems, launch_file.problems
    arguments = {"output": str(output), "use_rosbag2": str(use_rosbag2).lower(), "use_sim_time": str(use_sim_time).lower()}
    running = [
        p for p in launch_file.processes
        if condition_holds(p.kwargs.get("condition"), arguments, launch_file.declared) is True
    ]
    assert len(running) == 1, f"{len(running)} recorders would run for {arguments}"
    cmd = running[0].kwargs["cmd"]
    resolved = [resolve(cmd[0], arguments, launch_file.declared)] if isinstance(cmd[0], PackageExecutable) else []
    resolved += [resolve_text(part, arguments, launch_file.declared) for part in cmd[len(resolved):]]
    assert all(isinstance(part, str) for part in resolved), resolved
    return resolved


def test_both_recorders_record_the_same_topics(tmp_path):
    for use_sim_time in (False, True):
        rosbag2 = _recorder_command(tmp_path / "bag", True, use_sim_time)
        fallback = _recorder_command(tmp_path / "bag", False, use_sim_time)
        assert rosbag2[:3] == ["ros2", "bag", "record"] and Path(fallback[0]).name == "record"
        assert rosbag2[rosbag2.index("-s") + 1] == "mcap" and fallback[fallback.index("--storage") + 1] == "mcap"
        assert ("--use-sim-time" in rosbag2) == use_sim_time == ("--use-sim-time" in fallback)
        assert rosbag2[rosbag2.index("-o") + 1] == fallback[fallback.index("--out") + 1] == str(tmp_path / "bag")
        assert set(rosbag2[rosbag2.index("-o") + 2:]) == RECORDED_TOPICS
        # The fallback records its default set: cameras, followers and leaders (checked in a bag below).
        assert "--no-leaders" not in fallback and "--cameras" not in fallback
    overrides = Path(rosbag2[rosbag2.index("--qos-profile-overrides-path") + 1])
    qos = yaml.safe_load(overrides.read_text())
    assert set(qos) == set(names.CAMERA_TOPICS)
    assert all(profile["reliability"] == "best_effort" for profile in qos.values())


class _TeleopLeader:
    """Publishes leader joint states that follow the follower arms with a small offset, like teleop."""

    def __init__(self):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState

        from oft_policy.qos import SENSOR_QOS

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("teleop_leader_stand_in", context=self.context)
        self.published = 0
        for follower, leader in zip(names.FOLLOWER_JOINT_STATE_TOPICS, names.LEADER_JOINT_STATE_TOPICS):
            publisher = self.node.create_publisher(JointState, leader, SENSOR_QOS)
            self.node.create_subscription(JointState, follower, self._mirror(publisher), SENSOR_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _mirror(self, publisher):
        def on_state(msg):
            phase = time.monotonic()
            msg.position = [p + 0.05 * math.sin(phase + i) for i, p in enumerate(msg.position)]
            publisher.publish(msg)
            self.published += 1

        return on_state

    def close(self):
        self.executor.shutdown()
        self.thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


def _stop(process: subprocess.Popen, sig=signal.SIGINT, timeout=20.0):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
def test_record_preset_gives_a_bag_fit_normalizer_and_export_accept(tmp_path, ros_env):
    bag = tmp_path / "episode_000"
    # Sim time: the bag's stamps then follow the simulator's lockstep clock, so a slow, loaded
    # machine cannot open gaps in the recording (a real robot records on wall time).
    record_cmd = _recorder_command(bag, use_rosbag2=False, use_sim_time=True)
    sim_cmd = [
        str(executable_path("oft_sim", "aloha_sim")), "--ros-args",
        "--params-file", str(BRINGUP / "config" / "aloha_sim.yaml"),
        "-p", "wait_for_chunks:=false",  # no policy here: step on the lockstep timeout
    ]
    sim_log = tmp_path / "aloha_sim.log"
    sim_output = sim_log.open("w")
    sim = subprocess.Popen(sim_cmd, env=ros_env, stdout=sim_output, stderr=subprocess.STDOUT)
    leader = recorder = None
    record_log = ""
    try:
        leader = _TeleopLeader()
        deadline = time.monotonic() + 60
        while leader.published < 10:
            assert sim.poll() is None, f"aloha_sim exited: {sim_log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the simulator published no joint states within 60 s"
            time.sleep(0.2)
        recorder = subprocess.Popen(record_cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(RECORD_SECONDS)
        _stop(recorder)
        record_log = recorder.stdout.read()
        assert recorder.returncode == 0, f"record failed:\n{record_log[-2000:]}"
    finally:
        if recorder is not None:
            _stop(recorder, signal.SIGKILL)
        if leader is not None:
            leader.close()
        _stop(sim)
        sim_output.close()

    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == "mcap"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in metadata["topics_with_message_count"]}
    logs = f"record:\n{record_log[-1500:]}\naloha_sim:\n{sim_log.read_text()[-1500:]}"
    assert set(counts) == RECORDED_TOPICS, logs
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
