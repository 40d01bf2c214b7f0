"""Record ROS topics into a standard rosbag2 (mcap or sqlite3) from inside any rclpy node.

The recorder subscribes in raw mode, so each message arrives as the CDR bytes
the publisher sent and is written unchanged: the bag holds exactly the
standard serialization ``ros2 bag`` writes, with each topic's type name,
message definition, RIHS01 type hash and the publishers' offered QoS in its
metadata. Each message is stamped with its receive time on the node's clock
(sim time when the node uses it), as ``ros2 bag record`` does. A node on sim time
that has not yet received ``/clock`` reads time 0; messages arriving then are
not written (no message is ever filed at time 0) and are counted in
``skipped_before_clock``.

Usage inside a node (one bag per episode)::

    recorder = BagRecorder(node, default_topics(commanded_action=True))
    with recorder.recording(bag_dir):
        ...  # spin the node while the episode runs
    recorder.close()
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from oft_policy import names
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from oft_training import msgtypes

COMMANDED_ACTION_TOPIC = names.COMMANDED_ACTION_TOPIC
"""The simulator's commanded 14-D action (std_msgs/Float64MultiArray, ALOHA joint order)."""

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2 metadata version of Jazzy and later; Humble reads it too.


class RecorderError(RuntimeError):
    """The recorder was used out of order or cannot write the requested bag."""


def default_topics(
    cameras: Sequence[str] = names.CAMERA_NAMES,
    leaders: bool = True,
    commanded_action: bool = False,
    extra: Optional[Mapping[str, str]] = None,
    camera_topic_pattern: str = names.CAMERA_TOPIC_PATTERN,
) -> Dict[str, str]:
    """Topic -> type name of an ALOHA recording on the ALOHA stack's topic names."""
    topics = {names.camera_topic(cam, camera_topic_pattern): msgtypes.IMAGE for cam in cameras}
    topics.update({topic: msgtypes.JOINT_STATE for topic in names.FOLLOWER_JOINT_STATE_TOPICS})
    if leaders:
        topics.update({topic: msgtypes.JOINT_STATE for topic in names.LEADER_JOINT_STATE_TOPICS})
    if commanded_action:
        topics[COMMANDED_ACTION_TOPIC] = msgtypes.FLOAT64_ARRAY
    topics.update(extra or {})
    return topics


@dataclass
class RecordingSummary:
    """What one bag received: path and message count per topic."""

    path: Path
    message_counts: Dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.message_counts.values())


def _enum(enum_cls, value, default):
    try:
        return enum_cls(int(value))
    except (TypeError, ValueError):
        return default


def _rosbags_qos(profile) -> Qos:
    """rclpy QoSProfile -> the rosbags record written to a topic's metadata."""

    def duration(d) -> QosTime:
        nanoseconds = int(getattr(d, "nanoseconds", 0))
        return QosTime(sec=nanoseconds // 1_000_000_000, nsec=nanoseconds % 1_000_000_000)

    return Qos(
        history=_enum(QosHistory, profile.history, QosHistory.UNKNOWN),
        depth=int(profile.depth),
        reliability=_enum(QosReliability, profile.reliability, QosReliability.UNKNOWN),
        durability=_enum(QosDurability, profile.durability, QosDurability.UNKNOWN),
        deadline=duration(profile.deadline),
        lifespan=duration(profile.lifespan),
        liveliness=_enum(QosLiveliness, profile.liveliness, QosLiveliness.UNKNOWN),
        liveliness_lease_duration=duration(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


class BagRecorder:
    """Writes the messages of a set of topics into one rosbag2 per start()/stop().

    Subscriptions are made once, in the constructor, so consecutive bags (one per
    episode) lose no messages to discovery. Between bags messages are ignored.
    Callbacks may run on any executor thread: writes are serialized by a lock.
    """

    def __init__(self, node, topics: Mapping[str, str], storage: str = "mcap", qos_depth: int = 100):
        from rclpy.qos import QoSProfile, qos_profile_sensor_data

        if not topics:
            raise RecorderError("no topics to record")
        if storage not in STORAGES:
            raise RecorderError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        self._node = node
        self._storage = storage
        self._topics = {topic: msgtypes.canonical_type(t) for topic, t in topics.items()}
        self._typestore = msgtypes.new_typestore()
        for type_name in set(self._topics.values()):
            msgtypes.ensure_registered(self._typestore, type_name)
        # Best effort matches both reliable and best-effort publishers.
        qos = QoSProfile(
            history=qos_profile_sensor_data.history,
            depth=qos_depth,
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
        )
        self._lock = threading.Lock()
        self._writer: Optional[Writer] = None
        self._connections: dict = {}
        self._counts: Dict[str, int] = {}
        self._path: Optional[Path] = None
        self.skipped_before_clock = 0
        self._subscriptions = [
            node.create_subscription(
                msgtypes.rclpy_class(type_name), topic, self._callback_for(topic), qos, raw=True
            )
            for topic, type_name in self._topics.items()
        ]

    @property
    def topics(self) -> Dict[str, str]:
        return dict(self._topics)

    @property
    def message_counts(self) -> Dict[str, int]:
        """Messages written per topic into the current (or last) bag."""
        with self._lock:
            return dict(self._counts)

    @property
    def is_recording(self) -> bool:
        return self._writer is not None

    def start(self, bag_dir) -> Path:
        """Open a new bag at ``bag_dir`` (must not exist) and begin writing."""
        path = Path(bag_dir)
        with self._lock:
            if self._writer is not None:
                raise RecorderError(f"already recording into {self._path}")
            if path.exists():
                raise RecorderError(f"bag directory {path} exists already; not overwriting")
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = Writer(path, version=BAG_VERSION, storage_plugin=STORAGES[self._storage])
            writer.open()
            self._writer, self._path = writer, path
            self._connections, self._counts = {}, {topic: 0 for topic in self._topics}
        return path

    def stop(self) -> RecordingSummary:
        """Close the bag (writes metadata.yaml) and return what it holds."""
        with self._lock:
            if self._writer is None:
                raise RecorderError("stop() without start()")
            writer, self._writer = self._writer, None
            writer.close()
            return RecordingSummary(path=self._path, message_counts=dict(self._counts))

    @contextlib.contextmanager
    def recording(self, bag_dir):
        """``with recorder.recording(dir):`` start on entry, stop on exit (also on errors)."""
        self.start(bag_dir)
        summary = RecordingSummary(path=Path(bag_dir))
        try:
            yield summary
        finally:
            final = self.stop()
            summary.message_counts.update(final.message_counts)

    def close(self) -> None:
        """Stop a running bag and drop the subscriptions."""
        if self.is_recording:
            self.stop()
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions = []

    def _callback_for(self, topic: str):
        def on_message(data: bytes) -> None:
            stamp = self._node.get_clock().now().nanoseconds
            with self._lock:
                if self._writer is None:
                    return
                if stamp == 0:  # sim time before the first /clock message
                    self.skipped_before_clock += 1
                    return
                connection = self._connections.get(topic)
                if connection is None:
                    connection = self._add_connection(topic)
                self._writer.write(connection, stamp, data)
                self._counts[topic] += 1

        return on_message

    def _add_connection(self, topic: str):
        offered = [_rosbags_qos(info.qos_profile) for info in self._node.get_publishers_info_by_topic(topic)]
        connection = self._writer.add_connection(
            topic, self._topics[topic], typestore=self._typestore, offered_qos_profiles=offered
        )
        self._connections[topic] = connection
        return connection
