"""Synthetic ALOHA recordings with known content, for tests and benchmarks.

Joint positions are smooth functions of the receive time, given in the policy's
convention (`follower_positions`, `leader_positions`: arm rad, grippers 0..1) and
written in the driver's robot units through `CALIBRATION` (9-name joint states:
gripper motor radians, finger metres), so an export must give back the functions'
values. Every image is one flat gray level that counts the camera's messages, so a
reader can check which message each exported frame came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from oft_policy import names
from oft_policy.stamps import NS_PER_S, split_ns

from oft_training import msgtypes
from oft_policy.calibration import DEFAULT_CALIBRATION
from oft_training.recording import COMMANDED_ACTION_TOPIC, open_writer

T0_NS = 1_700_000_000 * NS_PER_S


CALIBRATION = DEFAULT_CALIBRATION
"""The rig the synthetic bags are recorded on."""

_GRIPPERS = np.array([k % 7 == 6 for k in range(14)])


def follower_positions(t: float) -> np.ndarray:
    """14 observed values at time t (s from the bag start), in the convention (grippers 0.1..0.9 open)."""
    wave = np.sin(0.7 * t + np.arange(14) * 0.3)
    return np.where(_GRIPPERS, 0.5 + 0.4 * wave, 0.5 * wave)


def leader_positions(t: float) -> np.ndarray:
    """14 action values at time t, in the convention."""
    return follower_positions(t + 0.1) + 0.01


def follower_driver_state(values: np.ndarray, calibration=CALIBRATION) -> np.ndarray:
    """7 convention values of one follower -> the driver's 9 positions (arm, gripper rad, fingers m)."""
    finger = calibration.follower_finger.denormalize(values[6])
    return np.concatenate([values[:6], [calibration.follower_joint.denormalize(values[6]), finger, -finger]])


def leader_driver_state(values: np.ndarray, calibration=CALIBRATION) -> np.ndarray:
    finger = calibration.leader_finger.denormalize(values[6])
    return np.concatenate([values[:6], [calibration.leader_joint.denormalize(values[6]), finger, -finger]])


def image_level(k: int) -> int:
    """Gray level of a camera's k-th image."""
    return (k * 3) % 256


def write_bag(
    path, seconds: float = 1.0, joint_hz: float = 100.0, camera_hz: float = 30.0,
    cameras: Sequence[str] = names.CAMERA_NAMES, image_hw=(32, 32), storage: str = "mcap",
    commanded_action: bool = False, corrupt_topic: Optional[str] = None,
    markers: Sequence[float] = (), marker_topic: str = "/oft/episode_start",
    camera_topic_pattern: str = names.CAMERA_TOPIC_PATTERN, calibration=CALIBRATION,
    instructions: Sequence = (),
) -> Path:
    """Write a bag of the suite's standard topics; ``corrupt_topic`` gets one truncated message mid-way;
    ``instructions``: (t seconds, text) messages on names.INSTRUCTION_TOPIC."""
    store = msgtypes.new_typestore()
    Image = store.types[msgtypes.IMAGE]
    JointState = store.types[msgtypes.JOINT_STATE]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Float64MultiArray = store.types[msgtypes.FLOAT64_ARRAY]
    Layout = store.types["std_msgs/msg/MultiArrayLayout"]
    events = []  # (time_ns, topic, type, message)

    def header(t_ns):
        sec, nanosec = split_ns(t_ns)
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="")

    arm_names = list(names.DRIVER_JOINT_STATE_NAMES)
    for k in range(int(seconds * joint_hz)):
        t = k / joint_hz
        t_ns = T0_NS + int(round(t * 1e9))
        for topics, values, to_driver in (
            (names.FOLLOWER_JOINT_STATE_TOPICS, follower_positions(t), follower_driver_state),
            (names.LEADER_JOINT_STATE_TOPICS, leader_positions(t), leader_driver_state),
        ):
            for side, topic in enumerate(topics):
                position = to_driver(values[7 * side: 7 * side + 7], calibration)
                # Publish joints in reverse order to prove the reader maps by name.
                msg = JointState(header=header(t_ns), name=arm_names[::-1], position=position[::-1].copy(),
                                 velocity=np.zeros(0), effort=np.zeros(0))
                events.append((t_ns + side, topic, msgtypes.JOINT_STATE, msg))
        if commanded_action:
            msg = Float64MultiArray(layout=Layout(dim=[], data_offset=0), data=leader_positions(t) + 1.0)
            events.append((t_ns + 2, COMMANDED_ACTION_TOPIC, msgtypes.FLOAT64_ARRAY, msg))
    height, width = image_hw
    for k in range(int(seconds * camera_hz)):
        t_ns = T0_NS + int(round(k / camera_hz * 1e9)) + 3
        for c, cam in enumerate(cameras):
            data = np.full(height * width * 3, image_level(k), dtype=np.uint8)
            msg = Image(header=header(t_ns), height=height, width=width, encoding="rgb8", is_bigendian=0,
                        step=width * 3, data=data)
            events.append((t_ns + c, names.camera_topic(cam, camera_topic_pattern), msgtypes.IMAGE, msg))
    Bool = store.types[msgtypes.BOOL]
    for t in markers:  # episode boundaries (std_msgs/Bool), received at t seconds
        events.append((T0_NS + int(round(t * 1e9)), marker_topic, msgtypes.BOOL, Bool(data=True)))
    String = store.types[msgtypes.STRING]
    for t, text in instructions:
        events.append((T0_NS + int(round(t * 1e9)), names.INSTRUCTION_TOPIC, msgtypes.STRING, String(data=text)))
    events.sort(key=lambda e: e[0])
    corrupt_at = None
    if corrupt_topic is not None:
        on_topic = [i for i, e in enumerate(events) if e[1] == corrupt_topic]
        corrupt_at = on_topic[len(on_topic) // 2]

    path = Path(path)
    writer = open_writer(path, storage)
    try:
        connections = {}
        for i, (t_ns, topic, type_name, msg) in enumerate(events):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, type_name, typestore=store)
            data = bytes(store.serialize_cdr(msg, type_name))
            if i == corrupt_at:
                data = data[: len(data) // 3]
            writer.write(connections[topic], t_ns, data)
    finally:
        writer.close()
    return path
