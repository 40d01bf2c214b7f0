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

Crash safety: every ``flush_interval_s`` (steady time, also when no message
arrives) the open chunk is closed, written and fsynced, so a recorder killed at
any moment leaves at most that much unwritten. Such a bag has no metadata.yaml;
``oft_training.bag_recovery`` rebuilds it, and ``fit_normalizer``/``export`` do so
on their own. A write that fails (a full disk) stops the bag, leaves what was
flushed recoverable, and is raised by ``stop()``.

Usage inside a node (one bag per episode)::

    recorder = BagRecorder(node, default_topics(commanded_action=True))
    with recorder.recording(bag_dir):
        ...  # spin the node while the episode runs
    recorder.close()
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from oft_policy import names
from oft_policy.stamps import split_ns
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from oft_training import msgtypes

COMMANDED_ACTION_TOPIC = names.COMMANDED_ACTION_TOPIC
"""The simulator's commanded 14-D action (std_msgs/Float64MultiArray, ALOHA joint order)."""

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_VERSION = 9  # rosbag2 metadata version of Jazzy and later; Humble reads it too.
FLUSH_INTERVAL_S = 0.5  # longest time a received message stays only in memory
WRITE_ERRORS = (OSError, sqlite3.Error)  # a full disk, as the mcap file or the sqlite3 database reports it


class RecorderError(RuntimeError):
    """The recorder was used out of order or cannot write the requested bag."""


CHUNK_CRC_OFFSET = 9 + 24  # record prefix, then message start/end time and uncompressed size


def _checksum_chunks(storage) -> None:
    """Make an mcap storage write each chunk's CRC (rosbags writes 0, 'none'), as rosbag2's own mcap
    writer does: readers then refuse a damaged chunk instead of decoding garbage."""
    close_chunk = storage.close_chunk

    def close_chunk_with_crc() -> None:
        crc = zlib.crc32(storage.chunk.bio.getbuffer())
        start = storage.bio.tell()
        close_chunk()
        end = storage.bio.tell()
        storage.bio.seek(start + CHUNK_CRC_OFFSET)
        storage.bio.write(struct.pack("<I", crc))
        storage.bio.seek(end)

    storage.close_chunk = close_chunk_with_crc  # also what the storage calls itself when a chunk fills


def open_writer(path, storage: str = "mcap") -> Writer:
    """An opened rosbags Writer of a new bag at ``path``: rosbag2 version 9, mcap chunks with CRCs."""
    if storage not in STORAGES:
        raise RecorderError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
    writer = Writer(path, version=BAG_VERSION, storage_plugin=STORAGES[storage])
    writer.open()
    if hasattr(writer.storage, "close_chunk"):
        _checksum_chunks(writer.storage)
    _lock_while_written(writer.storage)
    return writer


def _lock_while_written(storage) -> None:
    """An exclusive lock on the file being written, held until it is closed (or the process dies):
    recovery refuses a file it cannot lock, so a live recording is never repaired under its writer."""
    import fcntl

    storage.oft_lock = open(storage.path, "rb")  # noqa: SIM115 - closed with the storage, below
    fcntl.flock(storage.oft_lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    close = storage.close

    def close_and_unlock(*args) -> None:
        try:
            close(*args)
        finally:
            _release(storage)

    storage.close = close_and_unlock


def _release(storage) -> None:
    with contextlib.suppress(Exception):
        storage.oft_lock.close()


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
    topics[names.INSTRUCTION_TOPIC] = msgtypes.STRING
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
        sec, nanosec = split_ns(int(getattr(d, "nanoseconds", 0)))
        return QosTime(sec=sec, nsec=nanosec)

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

    def __init__(self, node, topics: Mapping[str, str], storage: str = "mcap", qos_depth: int = 100,
                 flush_interval_s: float = FLUSH_INTERVAL_S):
        from rclpy.clock import Clock, ClockType
        from rclpy.qos import QoSProfile, qos_profile_sensor_data

        if not topics:
            raise RecorderError("no topics to record")
        if storage not in STORAGES:
            raise RecorderError(f"unknown storage {storage!r}; expected one of {sorted(STORAGES)}")
        if not flush_interval_s > 0:
            raise RecorderError(f"flush_interval_s must be positive, got {flush_interval_s}")
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
        self._flush_interval_s = float(flush_interval_s)
        self._last_flush = time.monotonic()
        self._write_error: Optional[Exception] = None
        self.skipped_before_clock = 0
        from oft_policy.qos import INSTRUCTION_QOS

        # Latched topics (the instruction): the newest message is kept between bags and opens each new one.
        self._latched: Dict[str, Optional[bytes]] = {t: None for t in self._topics if t == names.INSTRUCTION_TOPIC}
        self._subscriptions = [
            node.create_subscription(
                msgtypes.rclpy_class(type_name), topic, self._callback_for(topic),
                INSTRUCTION_QOS if topic in self._latched else qos, raw=True,
            )
            for topic, type_name in self._topics.items()
        ]
        # Steady clock: a sim-time node whose /clock stopped still flushes.
        self._flush_timer = node.create_timer(
            self._flush_interval_s / 2, self._flush_if_due, clock=Clock(clock_type=ClockType.STEADY_TIME))

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
            writer = open_writer(path, self._storage)
            self._writer, self._path, self._write_error = writer, path, None
            self._last_flush = time.monotonic()
            self._connections, self._counts = {}, {topic: 0 for topic in self._topics}
            stamp = self._node.get_clock().now().nanoseconds
            for topic, data in self._latched.items():
                if data is not None and stamp:
                    self._guarded(lambda t=topic, d=data: self._write(t, stamp, d))
        return path

    @property
    def write_error(self) -> Optional[Exception]:
        """Why the current (or last) bag stopped being written, if a write failed."""
        return self._write_error

    def stop(self) -> RecordingSummary:
        """Close the bag (writes metadata.yaml) and return what it holds.

        RecorderError if a write failed during the bag: what was flushed before the
        failure is then left for recovery (see ``oft_training.bag_recovery``)."""
        with self._lock:
            if self._writer is None:
                if self._write_error is not None and self._path is not None:
                    raise self._failure()
                raise RecorderError("stop() without start()")
            try:
                self._writer.close()
            except WRITE_ERRORS as error:
                self._drop_writer(error)
                raise self._failure() from error
            self._writer = None
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
        self._node.destroy_timer(self._flush_timer)

    def _failure(self) -> RecorderError:
        return RecorderError(
            f"cannot write bag {self._path}: {self._write_error}; recording stopped. What reached the disk "
            "before the failure is kept: fit_normalizer and export recover it (or call "
            "oft_training.bag_recovery.recover_bag)")

    def _flush_if_due(self) -> None:
        """The steady timer's check (no message may arrive for a while)."""
        with self._lock:
            self._flush_when_due()

    def _flush_when_due(self) -> None:
        """Flush if the interval has passed; the caller holds the lock."""
        if self._writer is not None and time.monotonic() - self._last_flush >= self._flush_interval_s:
            self._guarded(self._flush)

    def _flush(self) -> None:
        """Put every received message on the disk: close the open chunk (mcap) or commit (sqlite3)."""
        storage = self._writer.storage
        if hasattr(storage, "close_chunk"):
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            os.fsync(storage.bio.fileno())
        else:
            storage.conn.commit()
        self._last_flush = time.monotonic()

    def _guarded(self, write) -> None:
        """Run a write; if it fails (a full disk) drop the writer without finishing the bag, keeping what was flushed."""
        try:
            write()
        except WRITE_ERRORS as error:
            self._drop_writer(error)

    def _drop_writer(self, error: Exception) -> None:
        """Close the failed bag's file without another write (its buffered bytes are lost), and unlock it."""
        storage, self._writer, self._write_error = self._writer.storage, None, error
        handle = getattr(storage, "bio", None) or getattr(storage, "conn", None)
        with contextlib.suppress(Exception):  # closing may fail on the same full disk
            handle.close()
        _release(storage)

    def _callback_for(self, topic: str):
        def on_message(data: bytes) -> None:
            stamp = self._node.get_clock().now().nanoseconds
            with self._lock:
                if topic in self._latched:
                    self._latched[topic] = bytes(data)
                if self._writer is None:
                    return
                if stamp == 0:  # sim time before the first /clock message
                    self.skipped_before_clock += 1
                    return
                self._guarded(lambda: self._write(topic, stamp, data))
                self._flush_when_due()

        return on_message

    def _write(self, topic: str, stamp: int, data: bytes) -> None:
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._add_connection(topic)
        self._writer.write(connection, stamp, data)
        self._counts[topic] += 1

    def _add_connection(self, topic: str):
        offered = [_rosbags_qos(info.qos_profile) for info in self._node.get_publishers_info_by_topic(topic)]
        connection = self._writer.add_connection(
            topic, self._topics[topic], typestore=self._typestore, offered_qos_profiles=offered
        )
        self._connections[topic] = connection
        return connection
