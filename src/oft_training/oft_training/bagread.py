"""Read rosbag2 recordings (sqlite3 or mcap) with the pure-Python `rosbags` library.

Joint states are read BY NAME from the driver's 9-name messages into the policy's
convention and the suite's 14-D ALOHA order (names.ALOHA_JOINT_NAMES), through a
calibration (oft_policy.calibration): a follower's gripper is observed from its finger
position, a leader's gripper becomes the action from its gripper joint. Messages that cannot be decoded are
counted per topic and reason in a :class:`DecodeIssues`; with
``on_corrupt="fail"`` the first one raises :class:`BagError` instead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
from oft_policy import names
from oft_policy.images import raw_to_rgb
from oft_policy.calibration import Calibration, leader_action_arm, observed_arm
from rosbags.rosbag2 import Reader

from oft_training import bag_recovery, msgtypes

CORRUPT_POLICIES = ("fail", "skip")


class BagError(ValueError):
    """A recording is missing, unreadable, lacks a topic, or holds a message that cannot be decoded."""


@dataclass
class DecodeIssues:
    """Undecodable messages by (topic, reason): reported, never silently dropped."""

    counts: Counter = field(default_factory=Counter)

    def add(self, topic: str, reason: str) -> None:
        self.counts[(topic, reason)] += 1

    def merge(self, other: "DecodeIssues") -> None:
        self.counts.update(other.counts)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list:
        return [f"{count} undecodable on {topic}: {reason}" for (topic, reason), count in sorted(self.counts.items())]


@dataclass
class Series:
    """Receive times (ns, sorted) and one value row per message."""

    times: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.times.shape[0])


def open_bag(path) -> Reader:
    """An opened rosbags Reader, or BagError with the reason."""
    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        hint = " (an unfinished recording: find_bags recovers it)" if bag_recovery.is_unfinished_bag(path) else ""
        raise BagError(f"{path} is not a rosbag2 directory (no metadata.yaml){hint}")
    reader = Reader(path)
    try:
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise BagError(f"cannot open bag {path} (truncated or damaged?): {exc}") from exc
    return reader


def bag_topics(reader: Reader) -> Dict[str, str]:
    return {conn.topic: conn.msgtype for conn in reader.connections}


def follower_arm(calibration: Calibration):
    """JointState of a follower -> its 7 observed values (arm rad, gripper from left_finger, normalized)."""
    return lambda msg: observed_arm(msg.name, msg.position, calibration)


def leader_arm(calibration: Calibration):
    """JointState of a leader -> its 7 action values (arm rad, gripper joint normalized)."""
    return lambda msg: leader_action_arm(msg.name, msg.position, calibration)


def float_array(msg, dim: int = len(names.ALOHA_JOINT_NAMES)) -> np.ndarray:
    values = np.asarray(msg.data, dtype=np.float64)
    if values.shape != (dim,):
        raise ValueError(f"expected {dim} values, got {values.shape[0]}")
    return values


def image_array(msg) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB, by the policy node's rules (oft_policy.images)."""
    return raw_to_rgb(msg)


class BagDecoder:
    """Decodes one bag's messages with a type store that knows the bag's own definitions."""

    def __init__(self, reader: Reader, on_corrupt: str = "fail"):
        if on_corrupt not in CORRUPT_POLICIES:
            raise ValueError(f"on_corrupt must be one of {CORRUPT_POLICIES}")
        self.reader = reader
        self.on_corrupt = on_corrupt
        self.issues = DecodeIssues()
        self.typestore = msgtypes.new_typestore()
        msgtypes.register_from_bag(self.typestore, reader.connections)

    def messages(self, topics: Iterable[str], convert, start: Optional[int] = None):
        """Yield (topic, time_ns, convert(msg)) for the topics (from ``start`` ns); undecodable ones are counted or raise."""
        wanted = set(topics)
        connections = [c for c in self.reader.connections if c.topic in wanted]
        for conn, stamp, raw in self._read(connections, start):
            try:
                value = convert(conn.topic, self.typestore.deserialize_cdr(raw, conn.msgtype))
            except Exception as exc:  # any decode failure is data corruption, reported below
                reason = " ".join(str(exc).split())[:120] or type(exc).__name__
                if self.on_corrupt == "fail":
                    raise BagError(
                        f"bag {self.reader.path}: undecodable message on {conn.topic} at t={stamp} ns ({reason}); "
                        "pass --skip-corrupt to skip such messages (they are counted)"
                    ) from exc
                self.issues.add(conn.topic, reason)
                continue
            yield conn.topic, stamp, value

    def _read(self, connections, start):
        """The reader's messages; a file damaged past decoding (a bad chunk CRC, a garbled record) is a BagError."""
        messages = self.reader.messages(connections=connections, start=start)
        while True:
            try:
                item = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # rosbags raises several types on damaged records
                reason = " ".join(str(exc).split())[:120] or type(exc).__name__
                raise BagError(f"bag {self.reader.path} is damaged: {reason} (it cannot be read past this point)") from exc
            yield item

    def series(self, topics: Sequence[str], convert) -> Dict[str, Series]:
        """One Series per topic (times sorted)."""
        rows: Dict[str, list] = {topic: [] for topic in topics}
        for topic, stamp, value in self.messages(topics, convert):
            rows[topic].append((stamp, value))
        out = {}
        for topic, items in rows.items():
            items.sort(key=lambda item: item[0])
            times = np.array([s for s, _ in items], dtype=np.int64)
            values = np.stack([v for _, v in items]) if items else np.zeros((0, 0))
            out[topic] = Series(times, values)
        return out


def read_joint_series(decoder: BagDecoder, topics: Sequence[str], to_arm) -> Dict[str, Series]:
    """Per arm topic: times and [N, 7] values, `to_arm` (follower_arm or leader_arm) of each message."""
    return decoder.series(topics, lambda _topic, msg: to_arm(msg))


def read_float_series(decoder: BagDecoder, topic: str, dim: int = len(names.ALOHA_JOINT_NAMES)) -> Series:
    return decoder.series([topic], lambda _topic, msg: float_array(msg, dim))[topic]


def latest_at_or_before(times: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the newest message at or before each query time (-1 where none)."""
    return np.searchsorted(times, queries, side="right") - 1


def combine_arms(series: Sequence[Series], queries: np.ndarray) -> np.ndarray:
    """Concatenate arms (left then right) sampled at ``queries``: [Q, 14]."""
    parts = []
    for arm in series:
        idx = latest_at_or_before(arm.times, queries)
        if np.any(idx < 0):
            raise ValueError("query before the first message of an arm")
        parts.append(arm.values[idx])
    return np.concatenate(parts, axis=1)


def joint_samples(decoder: BagDecoder, left_topic: str, right_topic: str, to_arm,
                  times_from: Optional[str] = None) -> np.ndarray:
    """[N, 14] joint samples: both arms at each message time of the later-starting arm stream.

    Sampled at the receive times of ``times_from`` (default: the left arm), from the
    first time both arms have a message: each sample is real telemetry, no interpolation.
    """
    arms = read_joint_series(decoder, [left_topic, right_topic], to_arm)
    left, right = arms[left_topic], arms[right_topic]
    if len(left) == 0 or len(right) == 0:
        empty = left_topic if len(left) == 0 else right_topic
        raise BagError(f"bag {decoder.reader.path} has no decodable joint states on {empty}")
    queries = arms[times_from or left_topic].times
    queries = queries[queries >= max(left.times[0], right.times[0])]
    return combine_arms([left, right], queries)


def _bag_or_recovered(path: Path, log) -> Optional[Path]:
    """``path`` if it is a bag; recovered first if it is an unfinished recording; else None."""
    if (path / "metadata.yaml").is_file():
        return path
    if not bag_recovery.is_unfinished_bag(path):
        return None
    try:
        report = bag_recovery.recover_bag(path)
    except (bag_recovery.RecoveryError, OSError) as error:
        raise BagError(f"{path} is an unfinished recording that cannot be recovered: {error}") from error
    log(report.summary())
    return path


def find_bags(paths: Iterable, log=print) -> list:
    """Bag directories named directly, or the bags one level inside a named directory (sorted).

    An unfinished recording (its recorder was killed: no metadata.yaml) is recovered in
    place first, and ``log`` says so."""
    bags = []
    for path in map(Path, paths):
        if _bag_or_recovered(path, log):
            bags.append(path)
        elif path.is_dir():
            found = [bag for bag in (_bag_or_recovered(p, log) for p in sorted(path.iterdir())) if bag]
            if not found:
                raise BagError(f"{path} is neither a rosbag2 directory nor a directory of them")
            bags.extend(found)
        else:
            raise BagError(f"bag {path} does not exist")
    if not bags:
        raise BagError("no bags given")
    return bags
