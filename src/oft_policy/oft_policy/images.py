"""Raw image messages (sensor_msgs/Image: rclpy's or rosbags') -> uint8 RGB arrays. Plain numpy, no ROS imports:
the policy node and the bag reader decode images with the same rules."""

from __future__ import annotations

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1, "8uc3": 3}
"""8-bit encodings read (lower case), and their channels."""


class ImageConversionError(ValueError):
    """An image message that cannot be turned into an RGB array."""


def raw_to_rgb(msg) -> np.ndarray:
    """An Image message (encoding, height, width, step, data) -> uint8 [H, W, 3] RGB; ImageConversionError if not."""
    encoding = str(msg.encoding).lower()
    channels = CHANNELS.get(encoding)
    if channels is None:
        raise ImageConversionError(f"unsupported image encoding {msg.encoding!r} (8-bit rgb/bgr/rgba/bgra/mono only)")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0 or step < width * channels or len(msg.data) < step * height:
        raise ImageConversionError(
            f"image {width}x{height} step {step} does not fit {len(msg.data)} bytes of {msg.encoding}"
        )
    try:
        buffer = np.frombuffer(msg.data, dtype=np.uint8, count=step * height)
    except TypeError:  # a plain list of ints
        buffer = np.asarray(msg.data[: step * height], dtype=np.uint8)
    pixels = buffer.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if encoding.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])
