"""Training samples from an exported LeRobotDataset v3.0: images, proprio, and a chunk of future actions.

Sample at frame k of an episode of length T: the camera images and the
follower state at k, and actions k .. k+chunk_size-1. Steps past the episode
end repeat the last action and are flagged in ``pad_mask`` (True = padding),
so the loss ignores them. Video frames are decoded with PyAV, one episode at a
time; datasets whose frames fit in ``cache_bytes`` keep every decoded episode
in memory (tiny datasets decode once), larger ones keep the most recent few.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pyarrow.parquet as pq
import torch
from oft_policy.normalization import NormalizationStats

from oft_training.lerobot_format import (
    ACTION_KEY, STATE_KEY, DatasetFormatError, image_key, read_info,
)

import av  # noqa: E402  (imported after lerobot_format sets the encoder log level)

DEFAULT_CACHE_BYTES = 2 << 30
RECENT_EPISODES = 4


class EpisodeTable:
    """The numeric columns and per-episode index of a v3.0 dataset, loaded once."""

    def __init__(self, root):
        self.root = Path(root)
        self.info = read_info(self.root)
        self.fps = int(self.info["fps"])
        features = self.info["features"]
        for key in (STATE_KEY, ACTION_KEY):
            if key not in features:
                raise DatasetFormatError(f"{root} has no feature {key}")
        self.state_dim = int(features[STATE_KEY]["shape"][0])
        self.action_dim = int(features[ACTION_KEY]["shape"][0])
        self.joint_names = tuple(features[ACTION_KEY].get("names") or ())
        self.cameras = tuple(k[len("observation.images."):] for k, f in features.items() if f["dtype"] == "video")
        data_files = sorted((self.root / "data").glob("*/*.parquet"))
        episode_files = sorted((self.root / "meta" / "episodes").glob("*/*.parquet"))
        if not data_files or not episode_files:
            raise DatasetFormatError(f"{root} lacks data or episode parquet files")
        data = pq.ParquetDataset(data_files).read().to_pandas() if len(data_files) > 1 else pq.read_table(data_files[0]).to_pandas()
        data = data.sort_values("index")
        self.state = np.stack(data[STATE_KEY].to_numpy()).astype(np.float32)
        self.action = np.stack(data[ACTION_KEY].to_numpy()).astype(np.float32)
        self.frame_episode = data["episode_index"].to_numpy()
        self.frame_index = data["frame_index"].to_numpy()
        import pandas as pd

        self.episodes = pd.concat([pq.read_table(f).to_pandas() for f in episode_files]).set_index("episode_index")
        self.tasks = {int(i): t[0] for i, t in zip(self.episodes.index, self.episodes["tasks"])}
        self.num_frames = int(self.state.shape[0])
        if self.num_frames != int(self.info["total_frames"]):
            raise DatasetFormatError(f"{root}: data has {self.num_frames} frames, info says {self.info['total_frames']}")
        self._check_videos()

    def _check_videos(self) -> None:
        """Every episode's frames exist in its video: the index and the mp4s agree (read from the containers)."""
        needed = {}
        for episode in self.episodes.index:
            row = self.episodes.loc[episode]
            for camera in self.cameras:
                key = image_key(camera)
                first = round(float(row[f"videos/{key}/from_timestamp"]) * self.fps)
                end = round(float(row[f"videos/{key}/to_timestamp"]) * self.fps)
                if end - first != int(row["length"]):
                    raise DatasetFormatError(
                        f"{self.root}: episode {episode} has {int(row['length'])} frames in its parquet data but "
                        f"{end - first} in its {key} video index")
                path = self.video_path(camera, episode)
                needed[path] = max(needed.get(path, 0), end)
        for path, frames_needed in needed.items():
            if not path.is_file():
                raise DatasetFormatError(f"{self.root}: video {path.relative_to(self.root)} is missing")
            try:
                with av.open(str(path)) as container:
                    stream = container.streams.video[0]
                    held = stream.frames  # from the container's index; 0 where it keeps none
                    if not held and stream.duration is not None:
                        held = int(round(float(stream.duration * stream.time_base) * self.fps))
            except (av.error.FFmpegError, IndexError) as error:
                raise DatasetFormatError(f"{self.root}: video {path.relative_to(self.root)} is unreadable: {error}") from error
            if held and held < frames_needed:
                raise DatasetFormatError(
                    f"{self.root}: video {path.relative_to(self.root)} holds {held} frames but the parquet data "
                    f"needs {frames_needed}: data and video disagree in length")

    def episode_range(self, episode: int) -> tuple:
        row = self.episodes.loc[episode]
        return int(row["dataset_from_index"]), int(row["dataset_to_index"])

    def video_path(self, camera: str, episode: int) -> Path:
        key = image_key(camera)
        row = self.episodes.loc[episode]
        return self.root / self.info["video_path"].format(
            video_key=key, chunk_index=int(row[f"videos/{key}/chunk_index"]), file_index=int(row[f"videos/{key}/file_index"])
        )

    def decode_episode(self, camera: str, episode: int) -> np.ndarray:
        """[T, H, W, 3] uint8 frames of one episode from its shared mp4 (seek, then decode by pts)."""
        key = image_key(camera)
        row = self.episodes.loc[episode]
        first = int(round(float(row[f"videos/{key}/from_timestamp"]) * self.fps))
        length = int(row["length"])
        frames = [None] * length
        with av.open(str(self.video_path(camera, episode))) as container:
            stream = container.streams.video[0]
            container.seek(int(first / self.fps / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                index = int(round(float(frame.pts * stream.time_base) * self.fps)) - first
                if index >= length:
                    break
                if index >= 0:
                    frames[index] = frame.to_ndarray(format="rgb24")
        missing = sum(f is None for f in frames)
        if missing:
            raise DatasetFormatError(f"{key} of episode {episode}: {missing} of {length} frames missing from the video")
        return np.stack(frames)


class ChunkDataset(torch.utils.data.Dataset):
    """(images, proprio, action chunk, pad mask, instruction) per frame of the chosen episodes."""

    def __init__(
        self, root, chunk_size: int, stats: NormalizationStats, episodes: Optional[Sequence[int]] = None,
        cameras: Optional[Sequence[str]] = None, cache_bytes: int = DEFAULT_CACHE_BYTES, table: Optional[EpisodeTable] = None,
    ):
        self.table = table or EpisodeTable(root)
        self.chunk_size = int(chunk_size)
        self.stats = stats
        if stats.dim != self.table.action_dim or self.table.state_dim != self.table.action_dim:
            raise DatasetFormatError(
                f"dataset state/action dims {self.table.state_dim}/{self.table.action_dim} disagree with stats dim {stats.dim}"
            )
        self.cameras = tuple(cameras or self.table.cameras)
        missing = [c for c in self.cameras if c not in self.table.cameras]
        if missing:
            raise DatasetFormatError(f"dataset has no camera {', '.join(missing)} (has {', '.join(self.table.cameras)})")
        self.episode_ids = list(episodes) if episodes is not None else sorted(int(e) for e in self.table.episodes.index)
        self.samples = np.concatenate(
            [np.arange(*self.table.episode_range(e)) for e in self.episode_ids]
        ) if self.episode_ids else np.zeros(0, dtype=np.int64)
        features = self.table.info["features"]
        frame_bytes = sum(int(np.prod(features[image_key(c)]["shape"])) for c in self.cameras)
        keep_all = frame_bytes * self.samples.shape[0] <= cache_bytes
        self._cache_limit = None if keep_all else RECENT_EPISODES
        self._frames: "OrderedDict[int, list]" = OrderedDict()
        self._proprio = stats.normalize_proprio(self.table.state)
        self._actions = stats.normalize_action(self.table.action)

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def episode_frames(self, episode: int) -> list:
        frames = self._frames.get(episode)
        if frames is None:
            frames = [self.table.decode_episode(cam, episode) for cam in self.cameras]
            self._frames[episode] = frames
            if self._cache_limit is not None and len(self._frames) > self._cache_limit:
                self._frames.popitem(last=False)
        else:
            self._frames.move_to_end(episode)
        return frames

    def __getitem__(self, i: int) -> dict:
        row = int(self.samples[i])
        episode = int(self.table.frame_episode[row])
        start, end = self.table.episode_range(episode)
        steps = np.arange(row, row + self.chunk_size)
        pad_mask = steps >= end
        actions = self._actions[np.minimum(steps, end - 1)]
        frames = self.episode_frames(episode)
        k = row - start
        return {
            "images": [cam_frames[k] for cam_frames in frames],
            "proprio": torch.from_numpy(self._proprio[row]),
            "actions": torch.from_numpy(np.ascontiguousarray(actions)),
            "pad_mask": torch.from_numpy(pad_mask),
            "instruction": self.table.tasks[episode],
            "episode_index": episode,
            "frame_index": k,
        }
