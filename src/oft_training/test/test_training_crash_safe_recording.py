"""`record` killed at any moment, or out of disk: what reached the disk is a readable bag.

Real processes: `record` in its own process on real DDS (loopback), killed with SIGKILL;
`fit_normalizer` and `export` then read the directory it left. The mcap reference
reader (the `mcap` package) opens the recovered file, as rosbag2's own tools do.
"""

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from oft_policy import names
from oft_policy.testing.reliability import record_outcome

from oft_training import bag_recovery, synthetic
from oft_training.bagread import open_bag
from oft_training.cli import export as export_cli
from oft_training.cli import fit_normalizer as fit_cli

CAMERA = "cam_high"
CAMERA_HZ, JOINT_HZ = 30.0, 50.0
IMAGE_HW = (96, 128)
LOSS_BOUND_S = 1.5  # acceptance: the dataset holds the recorded time less at most this


def _start_record(bag, ros_env, *extra, preexec_fn=None):
    command = [sys.executable, "-m", "oft_training.cli.record", "--out", str(bag), "--cameras", CAMERA, *extra]
    return subprocess.Popen(command, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=preexec_fn)


class _Teleoperation:
    """Publishes what a teleoperated ALOHA publishes: a camera, follower and leader joint states."""

    def __init__(self):
        import rclpy
        from rclpy.node import Node
        from sensor_msgs.msg import Image, JointState

        self._rclpy, self._JointState = rclpy, JointState
        self.node = Node("crash_test_teleoperation")
        self.image_pub = self.node.create_publisher(Image, names.camera_topic(CAMERA), 10)
        self.arm_pubs = {t: self.node.create_publisher(JointState, t, 10)
                         for t in names.FOLLOWER_JOINT_STATE_TOPICS + names.LEADER_JOINT_STATE_TOPICS}
        height, width = IMAGE_HW
        self.image = Image(height=height, width=width, encoding="rgb8", step=width * 3,
                           data=np.random.default_rng(0).integers(0, 255, height * width * 3, dtype=np.uint8).tobytes())

    def readers(self) -> set:
        """Subscription endpoints on our topics (a killed recorder's linger until their lease ends)."""
        return {(topic, bytes(info.endpoint_gid)) for topic in [names.camera_topic(CAMERA), *self.arm_pubs]
                for info in self.node.get_subscriptions_info_by_topic(topic)}

    def wait_for(self, recorder, known: set, leaders: bool = True, timeout_s=30.0):
        """Until a recorder started after ``known`` was taken reads every topic it records."""
        expected = 1 + len(self.arm_pubs) if leaders else 1 + len(names.FOLLOWER_JOINT_STATE_TOPICS)
        deadline = time.monotonic() + timeout_s
        while len({topic for topic, _ in self.readers() - known}) < expected:
            assert recorder.poll() is None, recorder.communicate()[0][-2000:]
            assert time.monotonic() < deadline, "record never subscribed"
            time.sleep(0.05)
        time.sleep(0.5)  # discovery completes on the recorder's side too

    def publish_for(self, seconds: float, recorder=None) -> float:
        """Publish at the cameras' and joints' rates; returns when publishing started (monotonic)."""
        start = time.monotonic()
        next_image = next_joint = start
        while time.monotonic() - start < seconds and (recorder is None or recorder.poll() is None):
            now = time.monotonic()
            if now >= next_joint:
                t = now - start
                for topic, pub in self.arm_pubs.items():
                    values = (synthetic.leader_positions if "leader" in topic else synthetic.follower_positions)(t)
                    side = 0 if "left" in topic else 1
                    to_driver = synthetic.leader_driver_state if "leader" in topic else synthetic.follower_driver_state
                    position = to_driver(values[7 * side: 7 * side + 7])
                    pub.publish(self._JointState(name=list(names.DRIVER_JOINT_STATE_NAMES), position=position.tolist()))
                next_joint += 1.0 / JOINT_HZ
            if now >= next_image:
                self.image_pub.publish(self.image)
                next_image += 1.0 / CAMERA_HZ
            time.sleep(0.002)
        return start

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def teleoperation():
    import rclpy

    rclpy.init()
    publisher = _Teleoperation()
    try:
        yield publisher
    finally:
        publisher.close()
        rclpy.shutdown()


def _dataset_seconds(dataset) -> float:
    info = json.loads((dataset / "meta" / "info.json").read_text())
    return info["total_frames"] / info["fps"]


def _record_then_kill(teleoperation, bag, ros_env, seconds: float, *record_args) -> int:
    """`record` into ``bag`` while teleoperating for ``seconds``, then SIGKILL it; the kill time (ns, system clock,
    the clock the recorder stamps with)."""
    known = teleoperation.readers()
    recorder = _start_record(bag, ros_env, *record_args)
    try:
        teleoperation.wait_for(recorder, known)
        teleoperation.publish_for(seconds, recorder)
        assert recorder.poll() is None, recorder.communicate()[0][-2000:]
        killed_ns = time.time_ns()
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(timeout=10)
    return killed_ns


@pytest.mark.slow
def test_record_killed_at_three_moments_keeps_all_but_its_last_flush(tmp_path, ros_env, teleoperation, capsys):
    """SIGKILL 2.5, 5.0 and 7.9 s into an 8 s episode; fit_normalizer and export recover each bag."""
    from mcap.reader import make_reader

    lost = {}
    for kill_at in (2.5, 5.0, 7.9):
        bag = tmp_path / f"killed_at_{kill_at}"
        killed_ns = _record_then_kill(teleoperation, bag, ros_env, kill_at)
        assert not (bag / "metadata.yaml").exists() and bag_recovery.is_unfinished_bag(bag)

        stats = tmp_path / f"stats_{kill_at}.json"
        assert fit_cli.main(["--bags", str(bag), "--out", str(stats)]) == 0
        assert f"recovered crashed recording {bag}" in capsys.readouterr().out
        dataset = tmp_path / f"dataset_{kill_at}"
        assert export_cli.main(["--bags", str(bag), "--out", str(dataset), "--instruction", "transfer the cube",
                                "--cameras", CAMERA, "--min-frames", "10"]) == 0
        reader = open_bag(bag)
        try:
            recorded_s = (killed_ns - reader.start_time) / 1e9  # from its first message to the kill
        finally:
            reader.close()
        seconds = _dataset_seconds(dataset)
        assert recorded_s > kill_at / 2, "the recorder missed the start: the test measures nothing"
        assert seconds >= recorded_s - LOSS_BOUND_S, (kill_at, recorded_s, seconds)
        lost[kill_at] = round(recorded_s - seconds, 2)

        with open(next(bag.glob("*.mcap")), "rb") as handle:  # the mcap reference reader, through the summary
            mcap_reader = make_reader(handle)
            summary = mcap_reader.get_summary()
            assert summary is not None
            assert sum(1 for _ in mcap_reader.iter_messages()) == summary.statistics.message_count > 0
    record_outcome(
        "Recorder killed mid-episode (SIGKILL)",
        "fit_normalizer and export recover the bag in place and say so; it opens in rosbags and the mcap reference reader",
        kill_times_s=list(lost), dataset_seconds_lost=list(lost.values()), worst_loss_s=max(lost.values()),
        flush_interval_s=0.5)


def test_record_sqlite3_killed_keeps_what_it_committed(tmp_path, ros_env, teleoperation, capsys):
    bag = tmp_path / "sqlite_bag"
    killed_ns = _record_then_kill(teleoperation, bag, ros_env, 3.0, "--storage", "sqlite3")
    assert bag_recovery.is_unfinished_bag(bag)
    assert fit_cli.main(["--bags", str(bag), "--out", str(tmp_path / "stats.json")]) == 0
    assert f"recovered crashed recording {bag}" in capsys.readouterr().out
    reader = open_bag(bag)
    try:
        recorded_s = (killed_ns - reader.start_time) / 1e9
        kept_s = reader.duration / 1e9
        assert reader.message_count > 0 and {c.topic for c in reader.connections} >= set(names.FOLLOWER_JOINT_STATE_TOPICS)
    finally:
        reader.close()
    assert recorded_s > 2.0 and kept_s >= recorded_s - LOSS_BOUND_S, (recorded_s, kept_s)


DISK_BYTES = 3 * 2**20


@contextlib.contextmanager
def _small_disk(directory):
    """A directory that holds DISK_BYTES: a tmpfs where mounting is allowed (ENOSPC, a real full disk),
    else a file-size limit on the recorder (EFBIG; Python ignores SIGXFSZ). Yields (directory, preexec_fn, how)."""
    directory.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(directory)], capture_output=True).returncode == 0
    try:
        if mounted:
            yield directory, None, "tmpfs full (ENOSPC)"
        else:
            def limit():
                resource.setrlimit(resource.RLIMIT_FSIZE, (DISK_BYTES, DISK_BYTES))
            yield directory, limit, "file size limit (EFBIG)"
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


def test_record_out_of_disk_exits_non_zero_and_leaves_a_readable_bag(tmp_path, ros_env, teleoperation):
    with _small_disk(tmp_path / "disk") as (disk, preexec_fn, how):
        bag = disk / "full"
        known = teleoperation.readers()
        recorder = _start_record(bag, ros_env, "--no-leaders", preexec_fn=preexec_fn)
        try:
            teleoperation.wait_for(recorder, known, leaders=False)
            started = teleoperation.publish_for(20.0, recorder)
            output, _ = recorder.communicate(timeout=30)
            failed_after = time.monotonic() - started
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait(timeout=10)
        assert recorder.returncode not in (0, None), output[-2000:]
        assert "cannot write bag" in output and ("No space left" in output or "File too large" in output), output[-2000:]
        assert "recovered crashed recording" in output, output[-2000:]
        reader = open_bag(bag)  # readable as it is: the recorder recovered it on the way out
        try:
            messages = reader.message_count
            readable_s = reader.duration / 1e9
        finally:
            reader.close()
        assert messages > 0 and readable_s > 0.5 and (bag / f"{bag.name}.mcap").stat().st_size <= DISK_BYTES
    record_outcome(
        "Disk full while recording",
        f"record exits {recorder.returncode} with the error; the bag up to the failure is recovered and readable",
        disk=how, exit_code=recorder.returncode, failed_after_s=round(failed_after, 2),
        readable_s=round(readable_s, 2), readable_messages=messages)


def _messages_before_the_cut(data: bytes, cut: int) -> int:
    """Messages the mcap reference reader streams from the file's first ``cut`` bytes before it stops."""
    import io

    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    count = 0
    try:
        for record in StreamReader(io.BytesIO(data[:cut]), skip_magic=False).records:
            count += isinstance(record, Message)
    except Exception:  # the cut-off record
        pass
    return count


def test_recovery_keeps_every_complete_chunk_of_a_cut_file(tmp_path):
    """Cut a finished bag's file anywhere, also between a chunk and its message indexes: recovery keeps exactly
    the messages the mcap reference reader streams from the cut file, and rosbags reads every one of them."""
    from rosbags.rosbag2 import Reader

    source = synthetic.write_bag(tmp_path / "source", seconds=4.0, cameras=(CAMERA,), image_hw=IMAGE_HW)
    data = next(source.glob("*.mcap")).read_bytes()
    chunks = bag_recovery.scan_mcap(data).chunks
    assert len(chunks) >= 3
    between_chunk_and_indexes = chunks[1].start + chunks[1].length + 5
    for cut in (len(data) // 4, between_chunk_and_indexes, len(data) // 2, len(data) - 100):
        bag = tmp_path / f"cut_{cut}"
        bag.mkdir()
        (bag / f"{bag.name}.mcap").write_bytes(data[:cut])
        report = bag_recovery.recover_bag(bag)
        assert report.total == _messages_before_the_cut(data, cut) > 0, cut
        assert report.dropped_bytes > 0
        with Reader(bag) as reader:
            assert reader.message_count == sum(1 for _ in reader.messages()) == report.total
        with pytest.raises(bag_recovery.RecoveryError, match="not an unfinished recording"):
            bag_recovery.recover_bag(bag)  # done once; the bag is complete now


def test_a_live_recording_is_not_recovered_under_its_writer(tmp_path):
    from oft_training.recording import open_writer

    writer = open_writer(tmp_path / "live")
    try:
        with pytest.raises(bag_recovery.RecoveryError, match="being written by a running recorder"):
            bag_recovery.recover_bag(tmp_path / "live")
        assert not (tmp_path / "live" / "metadata.yaml").exists()
    finally:
        writer.close()


def test_recovery_refuses_what_is_not_a_recording(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(bag_recovery.RecoveryError, match="not an unfinished recording"):
        bag_recovery.recover_bag(empty)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "garbage.mcap").write_bytes(b"not an mcap file at all")
    with pytest.raises(bag_recovery.RecoveryError, match="bad magic"):
        bag_recovery.recover_bag(garbage)
    assert not (garbage / "metadata.yaml").exists()
