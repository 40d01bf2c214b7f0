"""Recordings (rosbag2 or ALOHA/ACT hdf5) -> LeRobotDataset v3.0, one episode per bag or file.

Alignment rule (rosbag2): every stream (each camera, each follower arm, and the
action source: each leader arm or the commanded-action topic) is a series of
messages stamped with their receive time. Frames are placed at
``t_k = t_start + k / fps`` where ``t_start`` is the first time at which EVERY
stream has a message (earlier frames are skipped) and the last frame is at or
before the earliest last message of any stream. Each frame takes, from each
stream, the newest message at or before ``t_k`` (never a future message, no
interpolation). An episode is skipped, and reported with its reason, when a
stream has a gap between consecutive messages longer than ``max_gap_s`` inside
that window, or when it has fewer than ``min_frames`` frames (one action chunk).
Undecodable messages fail the export, or with ``on_corrupt="skip"`` are left
out and reported by count. The dataset is built in a temporary directory next
to the output and renamed into place only when complete.

Bags hold robot units (the driver's 9-name joint states: gripper motor radians, finger
metres); the dataset holds the policy's convention (oft_policy.calibration), through the
rig's calibration (``ExportOptions.calibration``): observation.state grippers are the
follower finger positions normalized, action grippers the leader gripper joints
normalized. Commanded actions and ALOHA/ACT hdf5 episodes are in the convention already
and are exported as recorded. ``meta/oft_export.json`` records each recording's action
source and the convention with its calibration.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from oft_policy import names
from oft_policy.stamps import NS_PER_S
from oft_policy.calibration import DEFAULT_CALIBRATION, Calibration, check_gripper_range, convention_record
from tqdm import tqdm

from oft_training.bagread import (
    BagDecoder, BagError, DecodeIssues, combine_arms, float_array, follower_arm, image_array,
    latest_at_or_before, leader_arm, open_bag,
)
from oft_training.fitting import resolve_action_source
from oft_training.lerobot_format import DEFAULT_CODEC, DatasetFormatError, LeRobotWriter
from oft_training.recording import COMMANDED_ACTION_TOPIC

PROVENANCE_PATH = "meta/oft_export.json"  # not a LeRobot file: LeRobot's loader ignores it


class ExportError(ValueError):
    """The export cannot produce a dataset (nothing was written)."""


@dataclass
class ExportOptions:
    instruction: str = ""  # for episodes whose bag records none on names.INSTRUCTION_TOPIC (hdf5: all)
    cameras: Sequence[str] = names.CAMERA_NAMES
    fps: int = 50
    action_source: str = "auto"
    commanded_topic: str = COMMANDED_ACTION_TOPIC
    max_gap_s: float = 0.5
    min_frames: int = 25
    on_corrupt: str = "fail"
    codec: str = DEFAULT_CODEC
    robot_type: str = "aloha"
    episode_topic: Optional[str] = None  # each message on it starts a new episode (split by receive time)
    calibration: Calibration = DEFAULT_CALIBRATION  # robot units of the bags -> the convention
    camera_topic_pattern: str = names.CAMERA_TOPIC_PATTERN


@dataclass
class ExportReport:
    out: Optional[Path] = None
    episodes: int = 0
    frames: int = 0
    skipped: List[tuple] = field(default_factory=list)  # (source, reason)
    issues: DecodeIssues = field(default_factory=DecodeIssues)
    action_sources: Dict[str, str] = field(default_factory=dict)  # recording -> leader | commanded | hdf5
    calibration: Calibration = DEFAULT_CALIBRATION  # the bags' calibration

    def skip_counts(self) -> Counter:
        return Counter(reason.split(":")[0] for _, reason in self.skipped)

    def lines(self) -> list:
        out = [f"wrote {self.episodes} episodes, {self.frames} frames -> {self.out}"]
        out += [f"skipped {src}: {reason}" for src, reason in self.skipped]
        out += [f"skipped episodes by reason: {dict(self.skip_counts())}"] if self.skipped else []
        out += self.issues.lines()
        out.append(f"undecodable messages skipped: {self.issues.total}")
        out.append(f"action sources: {dict(Counter(self.action_sources.values()))}")
        if set(self.action_sources.values()) & {"leader", "commanded"}:
            out.append(f"calibration: {self.calibration.describe()}")
        return out


class SkipEpisode(Exception):
    """This recording cannot become an episode (reason reported, export continues)."""


def frame_times(streams: Sequence[np.ndarray], fps: int) -> np.ndarray:
    """Frame times (ns) under the alignment rule: from the first time all streams have data to the earliest end."""
    start = max(int(t[0]) for t in streams)
    end = min(int(t[-1]) for t in streams)
    if end < start:
        return np.zeros(0, dtype=np.int64)
    count = (end - start) * fps // NS_PER_S + 1
    return start + (np.arange(count, dtype=np.int64) * NS_PER_S) // fps


def largest_gap(times: np.ndarray, start: int, end: int) -> float:
    """Longest interval (s) between consecutive messages, counting the stretch up to ``end``."""
    inside = times[(times >= start) & (times <= end)]
    previous = times[times <= start][-1:]
    points = np.concatenate([previous, inside, [end]])
    return float(np.max(np.diff(points)) / NS_PER_S) if points.shape[0] > 1 else 0.0


class BagEpisode:
    """One bag read in two passes: numbers and image times first, then the chosen frames streamed."""

    def __init__(self, bag: Path, options: ExportOptions):
        self.bag, self.options = Path(bag), options
        self.camera_topics = {cam: names.camera_topic(cam, options.camera_topic_pattern) for cam in options.cameras}
        self.action_source = None  # resolved from the bag's topics when it is read

    def write(self, writer: LeRobotWriter, issues: DecodeIssues) -> list:
        """Write this bag's episodes; one outcome per episode: its frame count or the SkipEpisode reason."""
        reader = open_bag(self.bag)
        try:
            return self._write(reader, writer, issues)
        finally:
            reader.close()

    def _write(self, reader, writer: LeRobotWriter, issues: DecodeIssues) -> list:
        opts = self.options
        topics = {c.topic for c in reader.connections}
        listing = ", ".join(sorted(topics))
        for cam, topic in self.camera_topics.items():
            if topic not in topics:
                raise BagError(f"bag {self.bag} has no topic {topic} for camera {cam}; topics in the bag: {listing}")
        source = self.action_source = resolve_action_source(topics, opts.action_source, opts.commanded_topic)
        self.arm_topics = list(names.FOLLOWER_JOINT_STATE_TOPICS)
        self.action_topics = [opts.commanded_topic] if source == "commanded" else list(names.LEADER_JOINT_STATE_TOPICS)
        extra = [opts.episode_topic] if opts.episode_topic else []
        for topic in self.arm_topics + self.action_topics + extra:
            if topic not in topics:
                raise BagError(f"bag {self.bag} has no topic {topic}; topics in the bag: {listing}")

        decoder = BagDecoder(reader, opts.on_corrupt)
        readers = {topic: follower_arm(opts.calibration) for topic in self.arm_topics}
        readers.update({topic: leader_arm(opts.calibration) if source == "leader" else float_array
                        for topic in self.action_topics})
        numeric = decoder.series(self.arm_topics + self.action_topics, lambda topic, msg: readers[topic](msg))
        image_times = self._image_times(decoder)
        markers = [stamp for _, stamp, _ in decoder.messages(extra, lambda _t, m: None)] if extra else []
        self.instructions = ([(stamp, text) for _, stamp, text in decoder.messages([names.INSTRUCTION_TOPIC], lambda _t, m: m.data)]
                             if names.INSTRUCTION_TOPIC in topics else [])
        issues.merge(decoder.issues)
        bounds = [-(2**63)] + sorted(markers) + [2**63 - 1]
        outcomes = []
        for low, high in zip(bounds[:-1], bounds[1:]):
            try:
                outcomes.append(self._write_window(reader, writer, numeric, image_times, source, low, high))
            except SkipEpisode as skip:
                outcomes.append(skip)
        return outcomes

    def _write_window(self, reader, writer, numeric, image_times, source, low: int, high: int) -> int:
        """One episode from the messages received in [low, high)."""
        opts = self.options
        streams = {topic: s.times for topic, s in numeric.items()}
        streams.update({self.camera_topics[c]: t for c, t in image_times.items()})
        inside = {topic: t[(t >= low) & (t < high)] for topic, t in streams.items()}
        empty = [topic for topic, t in inside.items() if t.shape[0] == 0]
        if len(empty) == len(inside):
            return 0  # nothing was recorded between these markers
        if empty:
            raise SkipEpisode(f"no messages: {', '.join(empty)}")
        times = frame_times(list(inside.values()), opts.fps)
        if times.shape[0] < opts.min_frames:
            raise SkipEpisode(f"too short: {times.shape[0]} frames < {opts.min_frames}")
        for topic, t in inside.items():
            gap = largest_gap(t, int(times[0]), int(times[-1]))
            if gap > opts.max_gap_s:
                raise SkipEpisode(f"gap: {gap:.3f} s without messages on {topic} (max {opts.max_gap_s} s)")

        state = combine_arms([numeric[t] for t in self.arm_topics], times)
        if source == "commanded":
            commanded = numeric[opts.commanded_topic]
            action = commanded.values[latest_at_or_before(commanded.times, times)]
        else:
            action = combine_arms([numeric[t] for t in self.action_topics], times)
        check_gripper_range(state, f"bag {self.bag} follower joint states", opts.calibration)
        check_gripper_range(action, f"bag {self.bag} actions ({source})", opts.calibration)
        instruction = self._instruction(low, int(times[0]), high)
        writer.begin_episode()
        self._stream_frames(reader, writer, image_times, times)
        writer.end_episode(state, action, instruction)
        return int(times.shape[0])

    def _instruction(self, start_ns: int, first_frame_ns: int, end_ns: int) -> str:
        """The instruction of the episode recorded in [start_ns, end_ns): of those given in it, the newest at
        its first frame, else the first; else the newest given before it; else the export's --instruction."""
        inside = [(stamp, text) for stamp, text in self.instructions if start_ns <= stamp < end_ns]
        at_start = [text for stamp, text in inside if stamp <= first_frame_ns]
        before = [text for stamp, text in self.instructions if stamp < start_ns]
        instruction = (at_start[-1:] or [text for _, text in inside[:1]] or before[-1:] or [self.options.instruction])[0]
        if not instruction or not instruction.strip():
            raise BagError(f"bag {self.bag} records no instruction on {names.INSTRUCTION_TOPIC}; pass --instruction")
        return instruction

    def _image_times(self, decoder: BagDecoder) -> Dict[str, np.ndarray]:
        camera_of = {topic: cam for cam, topic in self.camera_topics.items()}
        stamps = {cam: [] for cam in self.camera_topics}
        for topic, stamp, _ in decoder.messages(camera_of, lambda _t, msg: image_array(msg).shape):
            stamps[camera_of[topic]].append(stamp)
        out = {}
        for cam, values in stamps.items():
            times = np.asarray(values, dtype=np.int64)
            if np.any(np.diff(times) < 0):
                raise BagError(f"bag {self.bag}: images of {cam} are not stored in time order")
            out[cam] = times
        return out

    def _stream_frames(self, reader, writer: LeRobotWriter, image_times: Dict[str, np.ndarray], times: np.ndarray) -> None:
        """Second pass from the first image used: decode only the chosen messages, each pushed once per frame."""
        chosen = {cam: latest_at_or_before(t, times) for cam, t in image_times.items()}
        first = min(int(t[chosen[cam][0]]) for cam, t in image_times.items())
        # Ordinals count the messages the first pass kept; skipped (undecodable) ones fail here again.
        ordinal = {cam: int(np.searchsorted(t, first, side="left")) - 1 for cam, t in image_times.items()}
        cursor = {cam: 0 for cam in chosen}
        camera_of = {topic: cam for cam, topic in self.camera_topics.items()}
        second_pass = BagDecoder(reader, "skip")
        last = times.shape[0]
        for topic, _, image in second_pass.messages(camera_of, lambda _t, m: image_array(m), start=first):
            cam = camera_of[topic]
            ordinal[cam] += 1
            picks = chosen[cam]
            while cursor[cam] < last and picks[cursor[cam]] == ordinal[cam]:
                writer.add_frame(cam, image)
                cursor[cam] += 1
            if all(cursor[c] >= last for c in cursor):
                break


class Hdf5Episode:
    """An ALOHA/ACT episode file: /observations/qpos, /observations/images/<cam>, /action at the file's rate."""

    action_source = "hdf5"  # ALOHA/ACT files are in the convention already (0..1 grippers)

    def __init__(self, path: Path, options: ExportOptions):
        self.path, self.options = Path(path), options

    def write(self, writer: LeRobotWriter, issues: DecodeIssues) -> int:
        import h5py

        try:
            handle = h5py.File(self.path, "r")
        except OSError as exc:
            raise BagError(f"cannot open hdf5 episode {self.path}: {exc}") from exc
        with handle:
            for key in ("/observations/qpos", "/action"):
                if key not in handle:
                    raise BagError(f"hdf5 episode {self.path} has no dataset {key}")
            state, action = np.asarray(handle["/observations/qpos"]), np.asarray(handle["/action"])
            dim = len(names.ALOHA_JOINT_NAMES)
            if state.shape[1:] != (dim,) or action.shape != state.shape:
                raise BagError(f"hdf5 episode {self.path}: qpos {state.shape} / action {action.shape} are not [T, {dim}]")
            images = {}
            for cam in self.options.cameras:
                key = f"/observations/images/{cam}"
                if key not in handle:
                    raise BagError(f"hdf5 episode {self.path} has no dataset {key} for camera {cam}")
                images[cam] = handle[key]
                if images[cam].ndim != 4 or images[cam].shape[0] != state.shape[0] or images[cam].shape[-1] != 3:
                    raise BagError(
                        f"hdf5 episode {self.path}: {key} has shape {images[cam].shape}; expected [T, H, W, 3] "
                        "uint8 (JPEG-compressed episodes are not supported)"
                    )
            if state.shape[0] < self.options.min_frames:
                return [SkipEpisode(f"too short: {state.shape[0]} frames < {self.options.min_frames}")]
            if not self.options.instruction.strip():
                raise BagError(f"hdf5 episode {self.path} carries no instruction: pass --instruction")
            writer.begin_episode()
            for cam, frames in images.items():
                for k in range(state.shape[0]):
                    writer.add_frame(cam, np.asarray(frames[k], dtype=np.uint8))
            writer.end_episode(state, action, self.options.instruction)
            return [int(state.shape[0])]


def episode_sources(paths: Sequence, options: ExportOptions) -> list:
    """hdf5 files (or directories of them) and rosbag2 directories (or directories of them)."""
    from oft_training.bagread import find_bags

    sources, bag_paths = [], []
    for path in map(Path, paths):
        if path.is_file() and path.suffix in (".hdf5", ".h5"):
            sources.append(Hdf5Episode(path, options))
        elif path.is_dir() and not (path / "metadata.yaml").exists() and sorted(path.glob("*.hdf5")):
            sources.extend(Hdf5Episode(p, options) for p in sorted(path.glob("*.hdf5")))
        else:
            bag_paths.append(path)
    if bag_paths:
        sources.extend(BagEpisode(bag, options) for bag in find_bags(bag_paths))
    if not sources:
        raise ExportError("no recordings given")
    return sources


def write_provenance(root: Path, report: ExportReport) -> None:
    """How the dataset was made: per recording its action source; the convention and the bags' calibration."""
    from_bags = bool(set(report.action_sources.values()) - {Hdf5Episode.action_source})
    provenance = {"action_source_by_recording": report.action_sources,
                  "convention": convention_record(report.calibration if from_bags else None)}
    (root / PROVENANCE_PATH).write_text(json.dumps(provenance, indent=4) + "\n")


def export(paths: Sequence, out, options: ExportOptions, progress: bool = True) -> ExportReport:
    """Export recordings to a LeRobotDataset v3.0 at ``out`` (must not exist); all or nothing."""
    out = Path(out)
    if out.exists():
        raise ExportError(f"output {out} exists already; not overwriting")
    if options.fps <= 0:
        raise ExportError(f"fps must be positive, got {options.fps}")
    sources = episode_sources(paths, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    writer = LeRobotWriter(tmp, options.fps, options.cameras, names.ALOHA_JOINT_NAMES, options.codec, options.robot_type)
    report = ExportReport(calibration=options.calibration)
    try:
        for source in tqdm(sources, desc="exporting", unit="episode", disable=not progress):
            label = str(getattr(source, "bag", getattr(source, "path", "")))
            outcomes = source.write(writer, report.issues)
            report.action_sources[label] = source.action_source
            for index, outcome in enumerate(outcomes):
                if isinstance(outcome, SkipEpisode):
                    report.skipped.append((label if len(outcomes) == 1 else f"{label} episode {index}", str(outcome)))
                elif outcome:
                    report.frames += outcome
                    report.episodes += 1
        if report.episodes == 0:
            reasons = "; ".join(f"{s}: {r}" for s, r in report.skipped)
            raise ExportError(f"no usable episode ({reasons})")
        writer.finalize()
        write_provenance(tmp, report)
        tmp.rename(out)
    except BaseException:
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.out = out
    return report


__all__ = ["ExportOptions", "ExportReport", "ExportError", "export", "frame_times", "DatasetFormatError"]
