"""Record a real rosbag2 through rclpy, fit the normalizer, export, and read the dataset back."""

import json
import time

import numpy as np
import pytest
from oft_policy import names
from oft_policy.normalization import NormalizationStats

from oft_training import synthetic
from oft_training.bagread import BagError, BagDecoder, follower_arm, joint_samples, open_bag
from oft_training.cli import export as export_cli
from oft_training.cli import fit_normalizer as fit_cli
from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.exporter import ExportOptions, export, frame_times
from oft_training.fitting import fit_from_bags

CAMERAS = ("cam_high",)


def _publish_and_record(bag_dir, storage, steps=60):
    """Publish images, both arms' follower and leader states and a commanded action; record them."""
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    from oft_training.recording import COMMANDED_ACTION_TOPIC, BagRecorder, default_topics

    rclpy.init()
    node = Node("test_recorder")
    try:
        recorder = BagRecorder(node, default_topics(CAMERAS, commanded_action=True), storage=storage)
        image_pub = node.create_publisher(Image, names.camera_topic("cam_high"), 10)
        arm_pubs = {t: node.create_publisher(JointState, t, 10)
                    for t in names.FOLLOWER_JOINT_STATE_TOPICS + names.LEADER_JOINT_STATE_TOPICS}
        action_pub = node.create_publisher(Float64MultiArray, COMMANDED_ACTION_TOPIC, 10)
        deadline = time.monotonic() + 10
        while node.count_subscribers(COMMANDED_ACTION_TOPIC) == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        published = []
        with recorder.recording(bag_dir) as summary:
            for k in range(steps):
                image_pub.publish(Image(height=8, width=8, encoding="rgb8", step=24, data=bytes([k * 4 % 256] * 192)))
                for topic in arm_pubs:
                    side = 0 if "left" in topic else 1
                    # Arm joint j: k*0.01 + side + j*0.1 rad; the gripper opening 0.2 + k*0.005 (inside 0..1).
                    value = np.array([k * 0.01 + side + j * 0.1 for j in range(6)] + [0.2 + k * 0.005])
                    to_driver = synthetic.leader_driver_state if "leader" in topic else synthetic.follower_driver_state
                    # The driver's 9 names and units, reversed: the reader must map by name.
                    joint_names = list(names.DRIVER_JOINT_STATE_NAMES)
                    arm_pubs[topic].publish(JointState(name=joint_names[::-1], position=to_driver(value)[::-1].tolist()))
                action = [k / 100] * 14  # step k, in the convention's range (grippers inside 0..1)
                action_pub.publish(Float64MultiArray(data=action))
                published.append(k)
                end = time.monotonic() + 0.02
                while time.monotonic() < end:
                    rclpy.spin_once(node, timeout_sec=0.005)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.02)
        recorder.close()
        return summary
    finally:
        node.destroy_node()
        rclpy.shutdown()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_fit_export_read_back(tmp_path, storage):
    bag = tmp_path / "episode_000"
    summary = _publish_and_record(bag, storage)
    counts = dict(summary.message_counts)
    assert counts.pop(names.INSTRUCTION_TOPIC) == 0  # recorded when given; nobody gave one here
    assert all(count >= 40 for count in counts.values()), summary.message_counts

    reader = open_bag(bag)
    try:
        assert all(c.digest.startswith("RIHS01_") and c.ext.offered_qos_profiles for c in reader.connections)
        # The publishers' own QoS (reliable, as rclpy's depth-10 default) is what the bag records.
        from rosbags.interfaces import QosReliability

        assert all(q.reliability == QosReliability.RELIABLE for c in reader.connections for q in c.ext.offered_qos_profiles)
        assert {c.topic: c.msgtype for c in reader.connections}[names.camera_topic("cam_high")] == "sensor_msgs/msg/Image"
        assert all(c.msgdef.data for c in reader.connections)  # definitions stored: ros2 bag can decode
        follower = joint_samples(BagDecoder(reader), *names.FOLLOWER_JOINT_STATE_TOPICS, follower_arm(synthetic.CALIBRATION))
    finally:
        reader.close()
    # Mapped by name: joint j of the left arm is k*0.01 + j*0.1, the right arm adds 1.
    np.testing.assert_allclose(follower[:, 1:6] - follower[:, :1], np.tile(np.arange(1, 6) * 0.1, (len(follower), 1)), atol=1e-9)
    np.testing.assert_allclose(follower[:, 6], 0.2 + 0.5 * follower[:, 0], atol=1e-9)  # the finger read back as opening
    np.testing.assert_allclose(follower[:, 7] - follower[:, 0], 1.0, atol=0.031)  # right arm may lag a message or two

    stats_path = tmp_path / "stats.json"
    assert fit_cli.main(["--bags", str(bag), "--out", str(stats_path)]) == 0
    stats = NormalizationStats.load(stats_path)
    assert stats.joint_names == names.ALOHA_JOINT_NAMES
    assert stats.action.min[0] == 0.0 and stats.action.max[0] >= 0.5  # commanded actions were used (auto)

    out = tmp_path / "dataset"
    assert export_cli.main(["--bags", str(bag), "--out", str(out), "--instruction", "pick up the cube",
                            "--cameras", *CAMERAS, "--fps", "25", "--min-frames", "5"]) == 0
    table = EpisodeTable(out)
    info = json.loads((out / "meta" / "info.json").read_text())
    duration = info["total_frames"] / 25
    assert 1.0 <= duration <= 2.5 and table.num_frames == info["total_frames"]
    # Alignment: the commanded action k and the image level 4k were published together; at a frame,
    # the action is the newest at or before it, so the image may be a step older or newer (two under load).
    dataset = ChunkDataset(out, chunk_size=5, stats=stats)
    raw_actions = np.round(table.action[:, 0] * 100)  # the step k of each commanded action
    assert np.all(np.diff(raw_actions) >= 0)
    for i in range(0, len(dataset), 7):
        level = dataset[i]["images"][0].mean()
        assert abs(level - 4 * raw_actions[i]) <= 4 * 2 + 3, (i, level, raw_actions[i])
    # Reading back yields the recorded values: states are follower samples, actions commanded ones.
    np.testing.assert_allclose(table.state[:, 1] - table.state[:, 0], 0.1, atol=1e-5)
    assert set(np.unique(raw_actions)) <= set(float(k) for k in range(60))


def test_alignment_rule_on_known_bag(tmp_path):
    bag = synthetic.write_bag(tmp_path / "bag", seconds=1.0, joint_hz=100, camera_hz=30, cameras=CAMERAS)
    out = tmp_path / "ds"
    options = ExportOptions("fold", cameras=CAMERAS, fps=50, min_frames=10, calibration=synthetic.CALIBRATION)
    report = export([bag], out, options, progress=False)
    table = EpisodeTable(out)
    # Start when every stream has a message (the camera, 3 ns after t0); end at the earliest last message.
    assert report.frames == table.num_frames == 49
    times = (synthetic.T0_NS + 3 + np.arange(49) * 20_000_000 - synthetic.T0_NS) / 1e9
    expected_state = np.stack([synthetic.follower_positions(np.floor(t * 100 + 1e-9) / 100) for t in times])
    np.testing.assert_allclose(table.state, expected_state, atol=1e-6)
    expected_action = np.stack([synthetic.leader_positions(np.floor(t * 100 + 1e-9) / 100) for t in times])
    np.testing.assert_allclose(table.action, expected_action, atol=1e-6)
    stats = NormalizationStats.fit(table.state, table.action, names.ALOHA_JOINT_NAMES)
    dataset = ChunkDataset(out, chunk_size=25, stats=stats)
    for i in (0, 10, 48):
        camera_message = int(np.floor((times[i] - 3e-9) * 30 + 1e-9))
        assert abs(dataset[i]["images"][0].mean() - synthetic.image_level(camera_message)) < 1.5
    assert dataset[48]["pad_mask"].sum() == 24 and not dataset[24]["pad_mask"].any()
    meta_stats = json.loads((out / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(meta_stats["observation.state"]["mean"], table.state.mean(0), atol=1e-6)


def test_frame_times_rule():
    times = frame_times([np.array([10, 50, 90]), np.array([0, 30, 100])], fps=100_000_000)
    assert times.tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90]  # from max(first) to min(last)


def test_fit_reports_zero_variance_and_skipped_corrupt(tmp_path, monkeypatch, capsys):
    moving = synthetic.follower_positions

    def gripper_never_moves(t):
        values = moving(t)
        values[names.ALOHA_JOINT_NAMES.index("left_gripper")] = 0.3
        return values

    monkeypatch.setattr(synthetic, "follower_positions", gripper_never_moves)
    bag = synthetic.write_bag(tmp_path / "bag", seconds=0.5, cameras=CAMERAS, corrupt_topic="/follower_right/joint_states")
    with pytest.raises(BagError, match="undecodable message on /follower_right/joint_states"):
        fit_from_bags([bag], progress=False)
    result = fit_from_bags([bag], on_corrupt="skip", progress=False)
    assert result.issues.total == 1
    assert result.stats.zero_variance_proprio == ("left_gripper",)
    assert fit_cli.main(["--bags", str(bag), "--out", str(tmp_path / "stats.json"), "--skip-corrupt"]) == 0
    out = capsys.readouterr().out
    assert "zero-variance proprio dims: left_gripper" in out
    assert "1 undecodable on /follower_right/joint_states" in out and "undecodable messages skipped: 1" in out


def test_bad_input_missing_camera_topic(tmp_path, capsys):
    bag = synthetic.write_bag(tmp_path / "bag", seconds=0.5, cameras=CAMERAS)
    out = tmp_path / "ds"
    code = export_cli.main(["--bags", str(bag), "--out", str(out), "--instruction", "x", "--cameras", "cam_high", "cam_left_wrist"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "no topic /cam_left_wrist/camera/color/image_rect_raw for camera cam_left_wrist" in err
    assert list(tmp_path.iterdir()) == [bag]  # no dataset, no temporary directory


def test_bad_input_corrupt_message_mid_bag(tmp_path, capsys):
    good = synthetic.write_bag(tmp_path / "good", seconds=0.6, cameras=CAMERAS)
    bad = synthetic.write_bag(tmp_path / "bad", seconds=0.6, cameras=CAMERAS, corrupt_topic=names.camera_topic("cam_high"))
    out = tmp_path / "ds"
    code = export_cli.main(["--bags", str(good), str(bad), "--out", str(out), "--instruction", "x", "--cameras", "cam_high"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "undecodable message on /cam_high/camera/color/image_rect_raw" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "good"]
    # Skipping is explicit and counted.
    report = export([good, bad], out, ExportOptions("x", cameras=CAMERAS, min_frames=5, on_corrupt="skip"), progress=False)
    assert report.issues.total == 1 and report.episodes == 2


def test_short_and_gappy_episodes_are_reported(tmp_path):
    short = synthetic.write_bag(tmp_path / "short", seconds=0.3, cameras=CAMERAS)
    long = synthetic.write_bag(tmp_path / "long", seconds=2.0, cameras=CAMERAS, camera_hz=1.5)
    good = synthetic.write_bag(tmp_path / "good", seconds=0.8, cameras=CAMERAS)
    report = export([short, long, good], tmp_path / "ds", ExportOptions("x", cameras=CAMERAS, min_frames=25), progress=False)
    assert report.episodes == 1
    assert report.skip_counts() == {"too short": 1, "gap": 1}


def test_hdf5_import(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "episode_0.hdf5"
    steps = 30
    qpos = np.random.default_rng(0).normal(size=(steps, 14)).astype(np.float32)
    with h5py.File(path, "w") as handle:
        handle["/observations/qpos"] = qpos
        handle["/action"] = qpos + 1
        handle["/observations/images/cam_high"] = np.repeat(
            (np.arange(steps, dtype=np.uint8) * 8)[:, None, None, None], 16 * 16 * 3, axis=1).reshape(steps, 16, 16, 3)
    report = export([path], tmp_path / "ds", ExportOptions("x", cameras=CAMERAS, min_frames=10), progress=False)
    table = EpisodeTable(tmp_path / "ds")
    assert report.frames == steps
    np.testing.assert_allclose(table.state, qpos, atol=1e-6)
    np.testing.assert_allclose(table.action, qpos + 1, atol=1e-6)
    frames = table.decode_episode("cam_high", 0)
    assert np.abs(frames.reshape(steps, -1).mean(1) - np.arange(steps) * 8).max() < 2.0


def test_episode_markers_split_a_bag(tmp_path):
    bag = synthetic.write_bag(tmp_path / "bag", seconds=2.0, cameras=CAMERAS, markers=(0.8, 1.5))
    report = export([bag], tmp_path / "ds", ExportOptions("x", cameras=CAMERAS, min_frames=20,
                                                          episode_topic="/oft/episode_start"), progress=False)
    # Each window runs from the first time all streams have a message in it to the earliest last
    # message in it (camera at 30 Hz): [0, 0.767] -> 39 frames, [0.8, 1.467] -> 34, [1.5, 1.967] -> 24.
    table = EpisodeTable(tmp_path / "ds")
    lengths = table.episodes["length"].tolist()
    assert report.episodes == len(lengths) == 3 and not report.skipped
    assert lengths == [39, 34, 24]
    # Second episode starts at the first frame time after the marker: follower state at 0.8 s.
    first = table.episode_range(1)[0]
    np.testing.assert_allclose(table.state[first], synthetic.follower_positions(0.8), atol=1e-6)
    stats = NormalizationStats.fit(table.state, table.action, names.ALOHA_JOINT_NAMES)
    dataset = ChunkDataset(tmp_path / "ds", chunk_size=5, stats=stats)
    sample = dataset[first]
    assert sample["frame_index"] == 0 and abs(sample["images"][0].mean() - synthetic.image_level(24)) < 1.5


def test_each_episode_keeps_the_instruction_its_bag_recorded(tmp_path):
    """The newest /oft/instruction at an episode's first frame (else the first during it) is its task; the
    export's --instruction is only for bags that record none, and with neither the export refuses."""
    bag = synthetic.write_bag(tmp_path / "bag", seconds=2.0, cameras=CAMERAS, markers=(0.8,),
                              instructions=[(0.0, "pick up the red cube"), (0.9, "pick up the blue cube")])
    export([bag], tmp_path / "ds", ExportOptions("unused", cameras=CAMERAS, min_frames=20,
                                                 episode_topic="/oft/episode_start"), progress=False)
    table = EpisodeTable(tmp_path / "ds")
    assert [table.tasks[e] for e in range(2)] == ["pick up the red cube", "pick up the blue cube"]
    plain = synthetic.write_bag(tmp_path / "plain", seconds=1.0, cameras=CAMERAS)
    export([plain], tmp_path / "ds2", ExportOptions("fold the towel", cameras=CAMERAS, min_frames=20), progress=False)
    assert EpisodeTable(tmp_path / "ds2").tasks[0] == "fold the towel"
    with pytest.raises(BagError, match="records no instruction on /oft/instruction; pass --instruction"):
        export([plain], tmp_path / "ds3", ExportOptions(cameras=CAMERAS, min_frames=20), progress=False)
    assert not (tmp_path / "ds3").exists()


def test_record_console_script_stops_cleanly_on_sigint(tmp_path, ros_env):
    """`record` in its own process: Ctrl-C closes the bag (metadata.yaml written), exit code 0."""
    import signal
    import subprocess
    import sys

    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    bag = tmp_path / "bag"
    command = [sys.executable, "-m", "oft_training.cli.record", "--out", str(bag), "--cameras", "cam_high",
               "--no-leaders", "--storage", "sqlite3"]
    recorder = subprocess.Popen(command, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    node = Node("test_record_cli_publisher")
    try:
        publisher = node.create_publisher(JointState, names.FOLLOWER_JOINT_STATE_TOPICS[0], 10)
        deadline = time.monotonic() + 30
        while publisher.get_subscription_count() == 0:
            assert recorder.poll() is None and time.monotonic() < deadline, "record never subscribed"
            rclpy.spin_once(node, timeout_sec=0.05)
        time.sleep(1.0)  # discovery completes on the subscriber's side too
        for k in range(20):
            publisher.publish(JointState(name=list(names.ARM_JOINTS), position=[0.1 * k] * 7))
            time.sleep(0.02)
        time.sleep(0.5)
        recorder.send_signal(signal.SIGINT)
        output, _ = recorder.communicate(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(timeout=10)
        node.destroy_node()
        rclpy.shutdown()
    assert recorder.returncode == 0, output[-2000:]
    reader = open_bag(bag)
    try:
        counts = {c.topic: c.msgcount for c in reader.connections}
    finally:
        reader.close()
    assert set(counts) == {names.FOLLOWER_JOINT_STATE_TOPICS[0]}, (counts, output[-1000:])
    assert 15 <= counts[names.FOLLOWER_JOINT_STATE_TOPICS[0]] <= 20, counts  # best effort: rare drops under load


def test_sim_time_recorder_files_nothing_before_the_first_clock(tmp_path):
    """On sim time a node reads 0 until /clock arrives; nothing may be filed at time 0."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from std_msgs.msg import Float64MultiArray

    from rosbags.highlevel import AnyReader

    from oft_training.recording import COMMANDED_ACTION_TOPIC, BagRecorder

    rclpy.init()
    node = Node("test_sim_time_recorder", parameter_overrides=[Parameter("use_sim_time", value=True)])
    try:
        recorder = BagRecorder(node, {COMMANDED_ACTION_TOPIC: "std_msgs/msg/Float64MultiArray"})
        action_pub = node.create_publisher(Float64MultiArray, COMMANDED_ACTION_TOPIC, 10)
        clock_pub = node.create_publisher(Clock, "/clock", 10)

        def spin_until(predicate, timeout_s=10.0):
            deadline = time.monotonic() + timeout_s
            while not predicate() and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.02)
            return predicate()

        assert spin_until(lambda: node.count_subscribers(COMMANDED_ACTION_TOPIC) > 0)
        with recorder.recording(tmp_path / "bag") as summary:
            action_pub.publish(Float64MultiArray(data=[1.0]))
            assert spin_until(lambda: recorder.skipped_before_clock == 1)
            while not spin_until(lambda: node.get_clock().now().nanoseconds > 0, 0.2):
                clock_pub.publish(Clock(clock=Time(sec=7)))
            action_pub.publish(Float64MultiArray(data=[2.0]))
            assert spin_until(lambda: recorder.message_counts.get(COMMANDED_ACTION_TOPIC) == 1)
        recorder.close()
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert summary.message_counts == {COMMANDED_ACTION_TOPIC: 1}
    with AnyReader([tmp_path / "bag"]) as reader:
        stamps = [stamp for _, stamp, _ in reader.messages()]
    assert stamps == [7_000_000_000]


def test_the_instruction_in_force_opens_every_bag(tmp_path):
    """The instruction is latched: one given before a bag starts (or between two) is its first message."""
    import rclpy
    from rclpy.node import Node
    from rosbags.highlevel import AnyReader
    from std_msgs.msg import String

    from oft_policy.qos import INSTRUCTION_QOS
    from oft_training.recording import BagRecorder

    rclpy.init()
    node = Node("instruction_recorder_test")
    try:
        recorder = BagRecorder(node, {names.INSTRUCTION_TOPIC: "std_msgs/msg/String"})
        publisher = node.create_publisher(String, names.INSTRUCTION_TOPIC, INSTRUCTION_QOS)

        def spin(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                rclpy.spin_once(node, timeout_sec=0.02)

        publisher.publish(String(data="pick up the red cube"))
        spin(0.5)
        counts = []
        for name in ("first", "second"):
            with recorder.recording(tmp_path / name) as summary:
                spin(0.2)
            counts.append(summary.message_counts[names.INSTRUCTION_TOPIC])
            publisher.publish(String(data="pick up the blue cube"))  # between the bags
            spin(0.5)
        recorder.close()
    finally:
        node.destroy_node()
        rclpy.shutdown()
    assert counts == [1, 1]
    texts = []
    for name in ("first", "second"):
        with AnyReader([tmp_path / name]) as reader:
            texts += [reader.deserialize(raw, conn.msgtype).data for conn, _, raw in reader.messages()]
    assert texts == ["pick up the red cube", "pick up the blue cube"]
