"""Write a LeRobotDataset v3.0 directory, the layout LeRobot's v3.0 loader reads.

Checked against LeRobot's v3.0 loader (CODEBASE_VERSION "v3.0", the format of
the lerobot 0.4 releases): huggingface/lerobot ``src/lerobot/datasets/utils.py``
at commit 00448aa1 and ``lerobot_dataset.py`` at commit 00536c6c (see the
package README). What that loader reads, and therefore what is written here:

- ``meta/info.json``: codebase_version, fps, features (dtype, shape, names;
  video features carry an ``info`` block), data_path / video_path templates,
  chunks_size, data_files_size_in_mb, video_files_size_in_mb, total_episodes,
  total_frames, total_tasks, robot_type, splits;
- ``meta/stats.json``: per feature min, max, mean, std, count and quantiles
  (images: per channel, shape [3, 1, 1], values in [0, 1]);
- ``meta/tasks.parquet``: the task string as the index, column task_index;
- ``meta/episodes/chunk-000/file-000.parquet``: one row per episode with
  episode_index, tasks, length, data/chunk_index, data/file_index,
  dataset_from_index, dataset_to_index, videos/<key>/{chunk_index, file_index,
  from_timestamp, to_timestamp}, meta/episodes/{chunk_index, file_index} and
  stats/<feature>/<stat>;
- ``data/chunk-000/file-000.parquet``: observation.state, action (fixed-size
  float32 lists), timestamp (float32, seconds from the episode start),
  frame_index, episode_index, index, task_index (int64);
- ``videos/observation.images.<camera>/chunk-000/file-000.mp4``: all episodes
  back to back, frame i of the file at pts i / fps, so an episode's frame k is
  at from_timestamp + k / fps (the loader's query, tolerance 1e-4 s).

This module writes everything into one chunk and one file per kind.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner on every stream otherwise
import av  # noqa: E402

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 500
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH_TEMPLATE = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH_TEMPLATE = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH_TEMPLATE = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
STATE_KEY = "observation.state"
ACTION_KEY = "action"
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
DEFAULT_CODEC = "libsvtav1"  # LeRobot's default; any codec PyAV decodes works for the loader
PIX_FMT = "yuv420p"


class DatasetFormatError(ValueError):
    """Frames, shapes or episodes do not fit the dataset being written or read."""


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


def numeric_stats(values: np.ndarray) -> dict:
    """LeRobot's per-feature stats of an [N, D] array (lists, JSON-ready)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    out = {
        "min": values.min(axis=0), "max": values.max(axis=0),
        "mean": values.mean(axis=0), "std": values.std(axis=0),
    }
    out.update({name: np.quantile(values, q, axis=0) for name, q in QUANTILES.items()})
    stats = {k: v.tolist() for k, v in out.items()}
    stats["count"] = [int(values.shape[0])]
    return stats


class ImageStats:
    """Running per-channel stats of frames, in [0, 1], shaped [3, 1, 1] as LeRobot stores them."""

    def __init__(self):
        self.total = np.zeros(3)
        self.total_sq = np.zeros(3)
        self.low = np.full(3, np.inf)
        self.high = np.full(3, -np.inf)
        self.pixels = 0
        self.frames = 0
        self.frame_means = []

    def add(self, frame: np.ndarray) -> None:
        # A strided pixel grid (as LeRobot, which downsamples images for stats): exact min/max
        # are not needed, and full-resolution float math would cost more than the video encoding.
        stride = max(1, min(frame.shape[0], frame.shape[1]) // 32)
        pixels = frame[::stride, ::stride].reshape(-1, 3)
        wide = pixels.astype(np.int64)
        frame_total = wide.sum(axis=0) / 255.0
        self.total += frame_total
        self.total_sq += (wide * wide).sum(axis=0) / 255.0**2
        self.low = np.minimum(self.low, pixels.min(axis=0) / 255.0)
        self.high = np.maximum(self.high, pixels.max(axis=0) / 255.0)
        self.pixels += pixels.shape[0]
        self.frames += 1
        self.frame_means.append(frame_total / pixels.shape[0])

    def merge(self, other: "ImageStats") -> None:
        """Take in another run's frames (an episode's, into the dataset's)."""
        self.total += other.total
        self.total_sq += other.total_sq
        self.low = np.minimum(self.low, other.low)
        self.high = np.maximum(self.high, other.high)
        self.pixels += other.pixels
        self.frames += other.frames
        self.frame_means.extend(other.frame_means)

    def to_dict(self) -> dict:
        mean = self.total / self.pixels
        std = np.sqrt(np.maximum(self.total_sq / self.pixels - mean * mean, 0.0))
        means = np.stack(self.frame_means)
        shaped = lambda v: np.asarray(v).reshape(3, 1, 1).tolist()  # noqa: E731
        out = {"min": shaped(self.low), "max": shaped(self.high), "mean": shaped(mean), "std": shaped(std)}
        # Quantiles of per-frame channel means: a cheap, stable summary of the pixel distribution.
        out.update({name: shaped(np.quantile(means, q, axis=0)) for name, q in QUANTILES.items()})
        out["count"] = [self.frames]
        return out


ENCODER_THREADS = 2


class VideoEncoder:
    """One mp4 per camera; frame i gets pts i in a 1/fps time base."""

    def __init__(self, path: Path, height: int, width: int, fps: int, codec: str = DEFAULT_CODEC, crf: int = 30):
        if height % 2 or width % 2:
            raise DatasetFormatError(f"{PIX_FMT} video needs even image sizes, got {width}x{height}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.height, self.width, self.codec = path, height, width, codec
        self.container = av.open(str(path), mode="w")
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, PIX_FMT
        self.stream.time_base = Fraction(1, fps)
        self.stream.options = {"g": "2", "crf": str(crf)}  # short GOP: cheap random access, as LeRobot encodes
        # A few encoder threads per camera: SVT-AV1 otherwise starts dozens per encoder, and three
        # encoders of that many on a small machine were seen to stall in the encoder for good.
        self.stream.thread_count = ENCODER_THREADS
        self.frames = 0

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.height, self.width, 3):
            raise DatasetFormatError(
                f"frame of shape {image.shape} in a {self.width}x{self.height} video ({self.path.parent.parent.name})"
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


class LeRobotWriter:
    """Streams episodes into a v3.0 dataset at ``root`` (a fresh directory).

    Per episode: begin_episode(), add_frame(camera, image) in time order per
    camera, end_episode(state, action, task). Then finalize().
    """

    def __init__(self, root, fps: int, cameras: Sequence[str], joint_names: Sequence[str],
                 codec: str = DEFAULT_CODEC, robot_type: str = "aloha"):
        self.root = Path(root)
        self.fps, self.cameras, self.joint_names = int(fps), list(cameras), list(joint_names)
        self.codec, self.robot_type = codec, robot_type
        self.encoders: Dict[str, VideoEncoder] = {}
        self.image_stats = {cam: ImageStats() for cam in self.cameras}
        self._episode_image_stats = {cam: ImageStats() for cam in self.cameras}
        self.tasks: Dict[str, int] = {}
        self.states, self.actions, self.episodes, self.task_indices = [], [], [], []
        self.frames_total = 0
        self._episode_start_frames: Dict[str, int] = {}

    # ---- episodes -------------------------------------------------------
    def begin_episode(self) -> None:
        self._episode_start_frames = {cam: self._video_frames(cam) for cam in self.cameras}
        self._episode_image_stats = {cam: ImageStats() for cam in self.cameras}

    def add_frame(self, camera: str, image: np.ndarray) -> None:
        encoder = self.encoders.get(camera)
        if encoder is None:
            height, width = image.shape[:2]
            path = self.root / VIDEO_PATH_TEMPLATE.format(video_key=image_key(camera), chunk_index=0, file_index=0)
            encoder = self.encoders[camera] = VideoEncoder(path, height, width, self.fps, self.codec)
        encoder.add(image)
        self._episode_image_stats[camera].add(image)  # merged into image_stats when the episode ends

    def end_episode(self, state: np.ndarray, action: np.ndarray, task: str) -> int:
        state, action = np.asarray(state, np.float32), np.asarray(action, np.float32)
        length = state.shape[0]
        dim = len(self.joint_names)
        if state.shape != (length, dim) or action.shape != (length, dim):
            raise DatasetFormatError(f"episode state {state.shape} / action {action.shape} are not [{length}, {dim}]")
        for cam in self.cameras:
            written = self._video_frames(cam) - self._episode_start_frames[cam]
            if written != length:
                raise DatasetFormatError(f"camera {cam} got {written} frames for an episode of {length}")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        episode_index = len(self.episodes)
        row = {
            "episode_index": episode_index, "tasks": [task], "length": length,
            "data/chunk_index": 0, "data/file_index": 0,
            "dataset_from_index": self.frames_total, "dataset_to_index": self.frames_total + length,
        }
        for cam in self.cameras:
            start = self._episode_start_frames[cam] / self.fps
            key = image_key(cam)
            row.update({
                f"videos/{key}/chunk_index": 0, f"videos/{key}/file_index": 0,
                f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": start + length / self.fps,
            })
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        # Per-episode stats of every feature, as LeRobot writes them (its episode tools rebuild
        # the dataset's stats.json from these columns).
        steps = np.arange(length)
        features = {STATE_KEY: state, ACTION_KEY: action, "timestamp": steps / self.fps, "frame_index": steps,
                    "episode_index": np.full(length, episode_index), "index": self.frames_total + steps,
                    "task_index": np.full(length, task_index)}
        episode_stats = {key: numeric_stats(values) for key, values in features.items()}
        episode_stats.update({image_key(cam): self._episode_image_stats[cam].to_dict() for cam in self.cameras})
        for cam in self.cameras:
            self.image_stats[cam].merge(self._episode_image_stats[cam])
        for key, stats in episode_stats.items():
            for stat, value in stats.items():
                row[f"stats/{key}/{stat}"] = value
        self.episodes.append(row)
        self.states.append(state)
        self.actions.append(action)
        self.task_indices.append(task_index)
        self.frames_total += length
        return episode_index

    def _video_frames(self, camera: str) -> int:
        encoder = self.encoders.get(camera)
        return encoder.frames if encoder else 0

    # ---- files ----------------------------------------------------------
    def finalize(self) -> dict:
        """Close the videos and write data, episodes, tasks, stats and info. Returns info."""
        if not self.episodes:
            raise DatasetFormatError("no episode to write")
        for encoder in self.encoders.values():
            encoder.close()
        columns = self._data_columns()
        self._write_parquet(DATA_PATH_TEMPLATE.format(chunk_index=0, file_index=0), pa.table(columns))
        self._write_parquet(EPISODES_PATH_TEMPLATE.format(chunk_index=0, file_index=0), pa.Table.from_pylist(self.episodes))
        tasks = pa.table({
            "task_index": pa.array(list(self.tasks.values()), pa.int64()),
            "task": pa.array(list(self.tasks.keys()), pa.string()),
        })
        self._write_tasks(tasks)
        stats = {STATE_KEY: numeric_stats(np.concatenate(self.states)),
                 ACTION_KEY: numeric_stats(np.concatenate(self.actions))}
        for name in INDEX_COLUMNS:
            stats[name] = numeric_stats(np.asarray(columns[name]).astype(np.float64))
        for cam in self.cameras:
            stats[image_key(cam)] = self.image_stats[cam].to_dict()
        self._write_json(STATS_PATH, stats)
        info = self._info()
        self._write_json(INFO_PATH, info)
        return info

    def _data_columns(self) -> dict:
        dim = len(self.joint_names)
        lengths = [row["length"] for row in self.episodes]
        frame_index = np.concatenate([np.arange(n) for n in lengths]).astype(np.int64)
        episode_index = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)]).astype(np.int64)
        task_index = np.concatenate([np.full(n, t) for n, t in zip(lengths, self.task_indices)]).astype(np.int64)

        def fixed(values):
            flat = pa.array(np.concatenate(values).reshape(-1), pa.float32())
            return pa.FixedSizeListArray.from_arrays(flat, dim)

        return {
            STATE_KEY: fixed(self.states), ACTION_KEY: fixed(self.actions),
            "timestamp": pa.array((frame_index / self.fps).astype(np.float32)),
            "frame_index": pa.array(frame_index), "episode_index": pa.array(episode_index),
            "index": pa.array(np.arange(self.frames_total, dtype=np.int64)), "task_index": pa.array(task_index),
        }

    def _info(self) -> dict:
        scalar = lambda dtype: {"dtype": dtype, "shape": [1], "names": None}  # noqa: E731
        features = {
            STATE_KEY: {"dtype": "float32", "shape": [len(self.joint_names)], "names": self.joint_names},
            ACTION_KEY: {"dtype": "float32", "shape": [len(self.joint_names)], "names": self.joint_names},
        }
        for cam in self.cameras:
            enc = self.encoders[cam]
            features[image_key(cam)] = {
                "dtype": "video", "shape": [enc.height, enc.width, 3], "names": ["height", "width", "channels"],
                "info": {
                    "video.height": enc.height, "video.width": enc.width, "video.codec": _codec_name(enc.codec),
                    "video.pix_fmt": PIX_FMT, "video.is_depth_map": False, "video.fps": self.fps,
                    "video.channels": 3, "has_audio": False,
                },
            }
        features.update({"timestamp": scalar("float32"), "frame_index": scalar("int64"),
                         "episode_index": scalar("int64"), "index": scalar("int64"), "task_index": scalar("int64")})
        return {
            "codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type,
            "total_episodes": len(self.episodes), "total_frames": self.frames_total, "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB, "fps": self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH_TEMPLATE, "video_path": VIDEO_PATH_TEMPLATE if self.cameras else None,
            "features": features,
        }

    def _write_parquet(self, rel: str, table: pa.Table) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    def _write_tasks(self, table: pa.Table) -> None:
        # LeRobot reads tasks with pandas and looks tasks up by index: the task string is the index.
        frame = table.to_pandas().set_index("task")
        path = self.root / TASKS_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(path)

    def _write_json(self, rel: str, data: dict) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=4) + "\n")

    def abort(self) -> None:
        for encoder in self.encoders.values():
            try:
                encoder.container.close()
            except Exception:  # best effort: the directory is removed anyway
                pass


def _codec_name(codec: str) -> str:
    return {"libsvtav1": "av1", "libaom-av1": "av1", "libx264": "h264", "h264": "h264"}.get(codec, codec)


def read_info(root) -> dict:
    path = Path(root) / INFO_PATH
    if not path.is_file():
        raise DatasetFormatError(f"{root} is not a LeRobot dataset (no {INFO_PATH})")
    info = json.loads(path.read_text())
    version = info.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise DatasetFormatError(f"{root} has codebase_version {version!r}; this reader supports {CODEBASE_VERSION}")
    return info
