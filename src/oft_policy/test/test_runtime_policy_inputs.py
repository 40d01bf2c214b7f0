"""The policy node's plain parts and the message conversions (no DDS traffic)."""

import io

import numpy as np
import pytest
from oft_msgs.msg import ActionChunk
from sensor_msgs.msg import CompressedImage, Image, JointState

from oft_policy.names import ALOHA_JOINT_NAMES, ARM_JOINTS
from oft_policy.nodes.conversions import (
    ImageConversionError,
    chunk_from_msg,
    chunk_to_msg,
    compressed_to_rgb,
    image_to_rgb,
    follower_state_reader,
    rgb_to_image,
)
from oft_policy.runtime import Chunk
from oft_policy.runtime.policy_inputs import ChunkTrigger, InputBuffer

D = len(ALOHA_JOINT_NAMES)
CAMERAS = ("cam_high", "cam_left_wrist")


# ---- conversions ---------------------------------------------------------------------
def test_chunk_message_round_trip():
    rows = np.arange(3 * D, dtype=np.float64).reshape(3, D) * 0.01
    chunk = Chunk.from_rows(rows, ALOHA_JOINT_NAMES, 42, 100.25, 100.3, 0.02, "oft-x", 12.5)
    back = chunk_from_msg(chunk_to_msg(chunk, ActionChunk))
    assert back.sequence == 42 and back.joint_names == ALOHA_JOINT_NAMES and back.model_id == "oft-x"
    assert (back.chunk_size, back.action_dim) == (3, D)
    assert np.allclose(back.rows(), rows, atol=1e-6)
    assert back.stamp_s == pytest.approx(100.25) and back.start_time_s == pytest.approx(100.3)
    assert back.period_s == pytest.approx(0.02)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_encodings_to_rgb_with_row_padding(encoding):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    if encoding == "mono8":
        rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
        pixels = rgb[:, :, :1]
    elif encoding.startswith("bgr"):
        pixels = rgb[:, :, ::-1]
    else:
        pixels = rgb
    if channels == 4:
        pixels = np.concatenate([pixels, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    padded = np.zeros((5, 7 * channels + 3), np.uint8)  # 3 bytes of padding per row
    padded[:, : 7 * channels] = pixels.reshape(5, -1)
    msg = Image(height=5, width=7, encoding=encoding, step=7 * channels + 3, data=padded.tobytes())
    assert np.array_equal(image_to_rgb(msg), rgb)


def test_bad_images_raise_clear_errors():
    with pytest.raises(ImageConversionError, match="unsupported image encoding"):
        image_to_rgb(Image(height=1, width=1, encoding="16UC1", step=2, data=b"\0\0"))
    with pytest.raises(ImageConversionError, match="does not fit"):
        image_to_rgb(Image(height=4, width=4, encoding="rgb8", step=12, data=b"\0" * 10))
    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


def test_rgb_image_message_and_compressed_png_round_trip():
    from PIL import Image as PILImage

    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(image_to_rgb(rgb_to_image(rgb, Image, 1.5)), rgb)
    buffer = io.BytesIO()
    PILImage.fromarray(rgb).save(buffer, format="PNG")
    assert np.array_equal(compressed_to_rgb(CompressedImage(format="png", data=buffer.getvalue())), rgb)


def test_driver_joint_states_are_read_by_name_into_the_convention():
    from oft_policy.calibration import DEFAULT_CALIBRATION, ConventionError

    read = follower_state_reader(DEFAULT_CALIBRATION, arm=1)
    finger = DEFAULT_CALIBRATION.follower_finger.denormalize(0.25)
    msg = JointState(name=["right_finger", "left_finger", "gripper", "wrist_rotate", "wrist_angle", "forearm_roll",
                           "elbow", "shoulder", "waist"],
                     position=[-finger, finger, 1.0, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    columns, values = read(msg)
    assert columns == list(range(7, 14))
    assert np.allclose(values, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.25])  # the gripper observed from left_finger
    with pytest.raises(ConventionError, match="left_finger"):
        read(JointState(name=list(ARM_JOINTS), position=[0.0] * 7))  # a 7-name state: no finger


# ---- inputs and trigger --------------------------------------------------------------------
def filled_buffer(stamp=10.0, max_age=0.5):
    buffer = InputBuffer(CAMERAS, ALOHA_JOINT_NAMES, max_age)
    for cam in CAMERAS:
        buffer.put_image(cam, stamp, f"{cam}@{stamp}")
    buffer.put_joints(range(D), np.zeros(D), stamp)
    return buffer


def test_input_buffer_reports_missing_and_stale_inputs():
    buffer = InputBuffer(CAMERAS, ALOHA_JOINT_NAMES, 0.5)
    assert any("no cam_high" in p for p in buffer.problems(10.0))
    buffer = filled_buffer(stamp=10.0)
    assert buffer.problems(10.2) == []
    problems = buffer.problems(11.0)
    assert len(problems) == 3 and all("1.000 s old" in p for p in problems)
    buffer.put_image("cam_high", 9.0, "older frame")  # never replaces a newer one
    assert buffer.observation()[0]["cam_high"] == "cam_high@10.0"


def test_observation_is_stamped_with_the_oldest_frame():
    buffer = filled_buffer(stamp=10.0)
    buffer.put_image("cam_high", 10.03, "new")
    payloads, joints, stamp = buffer.observation()
    assert stamp == 10.0 and payloads["cam_high"] == "new" and joints.shape == (D,)


def test_queue_trigger_waits_for_the_executor_to_confirm():
    trigger = ChunkTrigger(mode="queue", queue_low_threshold=10, confirm_timeout_s=1.0, fresh_wait_s=0.05)
    buffer = filled_buffer(stamp=10.0)
    trigger.on_executor_status(queue_depth=20, last_sequence=0)
    assert not trigger.ready(10.0, buffer)
    trigger.on_executor_status(queue_depth=5, last_sequence=0)
    assert not trigger.ready(10.01, buffer)  # wanted since 10.01; frames are older: wait for fresh ones
    buffer.put_image("cam_high", 10.02, "f")
    buffer.put_image("cam_left_wrist", 10.02, "f")
    assert not trigger.ready(10.02, buffer)  # the joint states are still older than the request
    buffer.put_joints(range(D), np.zeros(D), 10.02)
    assert trigger.ready(10.02, buffer)
    trigger.on_published(7, 10.05)
    trigger.on_executor_status(queue_depth=5, last_sequence=0)  # not yet seen by the executor
    assert trigger.wanted_since(10.1) is None
    trigger.on_executor_status(queue_depth=5, last_sequence=7)
    assert trigger.wanted_since(10.2) == 10.2
    trigger.on_executor_status(queue_depth=0, last_sequence=7, halted=True)
    assert trigger.wanted_since(10.3) is None  # a halted executor gets no chunks


def test_unconfirmed_chunk_is_retried_after_the_timeout_and_fixed_rate_mode():
    wall = [100.0]
    trigger = ChunkTrigger(mode="queue", queue_low_threshold=10, confirm_timeout_s=0.5, wall_clock=lambda: wall[0],
                           executor_timeout_s=0.0)
    trigger.on_published(3, 10.0)
    wall[0] = 100.4
    assert trigger.wanted_since(10.0) is None
    wall[0] = 100.6  # the timeout runs on the wall clock: sim time may stand still waiting for this chunk
    assert trigger.wanted_since(10.0) == 10.0
    fixed = ChunkTrigger(mode="fixed_rate", fixed_period_s=0.2, fresh_wait_s=0.0, executor_timeout_s=0.0)
    buffer = filled_buffer(stamp=10.0)
    assert fixed.ready(10.0, buffer)
    fixed.on_published(1, 10.01)
    assert not fixed.ready(10.1, buffer) and fixed.ready(10.21, buffer)
    with pytest.raises(ValueError, match="trigger mode"):
        ChunkTrigger(mode="sometimes")


def test_queue_depth_is_counted_from_the_accepted_chunk_between_status_reports():
    trigger = ChunkTrigger(mode="queue", queue_low_threshold=5, confirm_timeout_s=1.0, fresh_wait_s=0.0)
    period = 0.02
    due = 10.0 + period * np.arange(1, 11)  # rows due 10.02 .. 10.20
    trigger.on_published(4, 10.0, due, period)
    trigger.on_executor_status(queue_depth=10, last_sequence=4)  # the acceptance report
    assert trigger.queue_depth(10.0) == 10
    assert trigger.queue_depth(10.10) == 5  # rows due 10.12 .. 10.20 remain; no report since
    assert trigger.wanted_since(10.10) is None
    assert trigger.wanted_since(10.12) == 10.12  # the exact step, not the next 10 Hz report
    trigger.on_executor_status(queue_depth=2, last_sequence=4)  # the executor lost rows: its word counts
    assert trigger.queue_depth(10.0) == 2


def test_no_chunk_is_wanted_while_the_executor_is_silent():
    wall = [100.0]
    trigger = ChunkTrigger(mode="queue", queue_low_threshold=10, executor_timeout_s=1.0, wall_clock=lambda: wall[0])
    assert trigger.executor_problem() == "no executor status received" and trigger.wanted_since(10.0) is None
    trigger.on_executor_status(queue_depth=0, last_sequence=0)
    assert trigger.executor_problem() == "" and trigger.wanted_since(10.0) == 10.0
    wall[0] = 101.5  # the executor died 1.5 s ago
    assert trigger.executor_problem().startswith("no executor status for 1.5 s") and trigger.wanted_since(10.1) is None
    trigger.on_executor_status(queue_depth=0, last_sequence=0)  # a new executor
    assert trigger.wanted_since(10.2) == 10.2
    with pytest.raises(ValueError, match="executor_timeout_s"):
        ChunkTrigger(executor_timeout_s=-1.0)


def test_restart_forgets_an_unconfirmed_chunk_of_the_previous_activation():
    trigger = ChunkTrigger(mode="queue", queue_low_threshold=10, confirm_timeout_s=1.0, executor_timeout_s=0.0)
    trigger.on_published(3, 10.0, [10.02], 0.02)  # its executor is gone: it will never confirm
    assert trigger.wanted_since(10.5) is None
    trigger.restart()
    assert trigger.wanted_since(10.5) == 10.5


def test_inputs_stamped_at_the_request_instant_count_as_new_despite_float_rounding():
    buffer = filled_buffer(stamp=2 + 920_000_000 * 1e-9)  # a header stamp: sec + nanosec
    assert buffer.inputs_newer_than(2_920_000_000 * 1e-9)  # the clock's nanoseconds: 2.9200000000000004
    assert not buffer.inputs_newer_than(2.921)
