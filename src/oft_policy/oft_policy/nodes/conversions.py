"""Message <-> plain data conversions shared by the policy and executor nodes.

Images convert without cv_bridge (it is used when installed); compressed
images decode with OpenCV or Pillow, whichever is present.
"""

from __future__ import annotations

import io

import numpy as np
from builtin_interfaces.msg import Duration, Time

from oft_policy.images import ImageConversionError, raw_to_rgb  # noqa: F401  (ImageConversionError: the nodes')
from oft_policy.stamps import seconds_to_ns, split_ns, stamp_to_ns
from oft_policy.calibration import observed_arm
from oft_policy.runtime.chunks import Chunk

try:  # optional: a ROS install with vision_opencv
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except ImportError:  # the PyPI wheels have no cv_bridge
    _BRIDGE = None


# ---- time (oft_policy.stamps does the arithmetic) ------------------------------------
def time_to_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


time_to_nanoseconds = stamp_to_ns  # builtin_interfaces Time or Duration -> integer nanoseconds


def nanoseconds_to_time(nanoseconds: int) -> Time:
    sec, nanosec = split_ns(nanoseconds)
    return Time(sec=sec, nanosec=nanosec)


def seconds_to_time(seconds: float) -> Time:
    return nanoseconds_to_time(seconds_to_ns(seconds))


def seconds_to_duration(seconds: float) -> Duration:
    sec, nanosec = split_ns(seconds_to_ns(seconds))
    return Duration(sec=sec, nanosec=nanosec)


# ---- chunks -------------------------------------------------------------------------
def chunk_from_msg(msg) -> Chunk:
    """An oft_msgs/ActionChunk as a Chunk, unvalidated (the validator decides)."""
    return Chunk(
        sequence=int(msg.sequence),
        stamp_s=time_to_seconds(msg.header.stamp),
        start_time_s=time_to_seconds(msg.start_time),
        period_s=time_to_seconds(msg.period),
        joint_names=tuple(msg.joint_names),
        chunk_size=int(msg.chunk_size),
        action_dim=int(msg.action_dim),
        actions=np.asarray(msg.actions, dtype=np.float64).reshape(-1),
        model_id=msg.model_id,
        inference_ms=float(msg.inference_ms),
    )


def chunk_to_msg(chunk: Chunk, msg_type):
    """A Chunk as an `msg_type` (oft_msgs/ActionChunk) message."""
    msg = msg_type()
    msg.header.stamp = seconds_to_time(chunk.stamp_s)
    msg.sequence = int(chunk.sequence)
    msg.joint_names = list(chunk.joint_names)
    msg.chunk_size = int(chunk.chunk_size)
    msg.action_dim = int(chunk.action_dim)
    msg.actions = np.asarray(chunk.actions, dtype=np.float32).reshape(-1)
    msg.period = seconds_to_duration(chunk.period_s)
    msg.start_time = seconds_to_time(chunk.start_time_s)
    msg.inference_ms = float(chunk.inference_ms)
    msg.model_id = chunk.model_id
    return msg


# ---- joint states ----------------------------------------------------------------------
def follower_state_reader(calibration, arm: int, per_arm: int = 7):
    """A function: one follower's driver JointState -> (its columns of the 14-dim vector, its 7 values
    in the policy's convention), read by name (oft_policy.calibration.observed_arm); ConventionError
    names what the message lacks."""
    columns = list(range(arm * per_arm, (arm + 1) * per_arm))

    def read(msg):
        return columns, observed_arm(msg.name, msg.position, calibration)

    return read


# ---- images -----------------------------------------------------------------------------
def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> uint8 [H, W, 3] RGB (through cv_bridge where it is installed)."""
    if _BRIDGE is not None:
        try:
            return np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
        except Exception as exc:  # cv_bridge raises its own error types
            raise ImageConversionError(f"cv_bridge cannot convert {msg.encoding!r}: {exc}") from exc
    return raw_to_rgb(msg)


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 [H, W, 3] RGB."""
    data = bytes(msg.data)
    try:
        import cv2

        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ImageConversionError(f"cannot decode compressed image ({msg.format!r})")
        return np.ascontiguousarray(decoded[:, :, ::-1])
    except ImportError:
        pass
    try:
        from PIL import Image as PILImage
    except ImportError as exc:
        raise ImageConversionError("compressed images need OpenCV or Pillow installed") from exc
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as exc:  # Pillow raises several error types for bad data
        raise ImageConversionError(f"cannot decode compressed image ({msg.format!r}): {exc}") from exc


def rgb_to_image(pixels: np.ndarray, msg_type, stamp_s: float, frame_id: str = ""):
    """uint8 [H, W, 3] RGB -> sensor_msgs/Image (for publishers such as tests and benchmarks)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    msg = msg_type()
    msg.header.stamp = seconds_to_time(stamp_s)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = "rgb8"
    msg.step = msg.width * 3
    msg.data = pixels.tobytes()
    return msg
