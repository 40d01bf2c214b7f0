"""The exported directory is a LeRobotDataset v3.0 as LeRobot 0.4.x's loader reads it.

LeRobot itself pulls a CUDA torch, so this test checks, without importing it,
every file and column its v3.0 loader (LeRobotDatasetMetadata + LeRobotDataset,
src/lerobot/datasets/{utils,lerobot_dataset}.py) reads, with the same path
templates, dtypes, index arithmetic and video timestamp query (tolerance 1e-4 s).
"""

import json

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from oft_training.synthetic import image_level

TOLERANCE_S = 1e-4  # LeRobot's default video timestamp tolerance


def test_info_json(tiny_dataset):
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    for key in ("robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
                "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits", "data_path", "video_path", "features"):
        assert key in info, key
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["total_episodes"] == 4 and info["total_tasks"] == 1 and info["fps"] == 50
    assert info["splits"] == {"train": "0:4"}
    features = info["features"]
    for key in ("observation.state", "action"):
        assert features[key]["dtype"] == "float32" and features[key]["shape"] == [14]
        assert len(features[key]["names"]) == 14
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        assert features[key] == {"dtype": dtype, "shape": [1], "names": None}
    video = features["observation.images.cam_high"]
    assert video["dtype"] == "video" and video["shape"] == [32, 32, 3]
    assert video["names"] == ["height", "width", "channels"]
    assert video["info"]["video.fps"] == 50 and video["info"]["video.height"] == 32


def test_data_parquet(tiny_dataset):
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    table = pq.read_table(tiny_dataset / info["data_path"].format(chunk_index=0, file_index=0))
    schema = table.schema
    for key in ("observation.state", "action"):
        # datasets.Sequence(length=14, float32): a fixed-size list of float32.
        assert schema.field(key).type == pa.list_(pa.float32(), 14)
    assert schema.field("timestamp").type == pa.float32()
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert schema.field(key).type == pa.int64()
    data = table.to_pandas()
    assert len(data) == info["total_frames"]
    assert data["index"].tolist() == list(range(len(data)))
    for _, group in data.groupby("episode_index"):
        n = len(group)
        assert group["frame_index"].tolist() == list(range(n))
        np.testing.assert_allclose(group["timestamp"], np.arange(n) / info["fps"], atol=1e-6)


def test_tasks_and_episodes(tiny_dataset):
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    tasks = pd.read_parquet(tiny_dataset / "meta" / "tasks.parquet")
    # LeRobot: the task string is the index, task_index a column; meta.tasks.iloc[i].name is the text.
    assert tasks.index.tolist() == ["fold the towel"] and tasks.iloc[0].name == "fold the towel"
    assert tasks["task_index"].tolist() == [0]
    episodes = pq.read_table(tiny_dataset / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pandas()
    data = pq.read_table(tiny_dataset / "data" / "chunk-000" / "file-000.parquet").to_pandas()
    key = "observation.images.cam_high"
    needed = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
              "dataset_to_index", f"videos/{key}/chunk_index", f"videos/{key}/file_index",
              f"videos/{key}/from_timestamp", f"videos/{key}/to_timestamp", "meta/episodes/chunk_index",
              "meta/episodes/file_index", "stats/observation.state/mean", "stats/action/max"]
    for column in needed:
        assert column in episodes.columns, column
    # Per-episode stats of every feature: LeRobot's episode tools (delete, split) rebuild stats.json from them.
    for feature in info["features"]:
        for stat in ("min", "max", "mean", "std", "count", "q01", "q99"):
            assert f"stats/{feature}/{stat}" in episodes.columns, (feature, stat)
    first = episodes.iloc[1]
    assert list(first["stats/episode_index/min"]) == [1] and list(first["stats/frame_index/max"]) == [first["length"] - 1]
    assert np.asarray(first[f"stats/{key}/mean"].tolist(), dtype=object).shape[0] == 3
    assert episodes["episode_index"].tolist() == [0, 1, 2, 3]
    assert episodes["length"].sum() == info["total_frames"]
    previous_end = 0
    for _, ep in episodes.iterrows():
        assert list(ep["tasks"]) == ["fold the towel"]
        assert ep["dataset_from_index"] == previous_end
        assert ep["dataset_to_index"] - ep["dataset_from_index"] == ep["length"]
        rows = data[data["episode_index"] == ep["episode_index"]]
        assert rows["index"].min() == ep["dataset_from_index"] and rows["index"].max() == ep["dataset_to_index"] - 1
        np.testing.assert_allclose(ep[f"videos/{key}/to_timestamp"] - ep[f"videos/{key}/from_timestamp"],
                                   ep["length"] / info["fps"], atol=1e-9)
        previous_end = ep["dataset_to_index"]


def test_video_frames_at_loader_timestamps(tiny_dataset):
    """Every frame the loader asks for (from_timestamp + timestamp) exists within its tolerance."""
    info = json.loads((tiny_dataset / "meta" / "info.json").read_text())
    key = "observation.images.cam_high"
    episodes = pq.read_table(tiny_dataset / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pandas()
    data = pq.read_table(tiny_dataset / "data" / "chunk-000" / "file-000.parquet").to_pandas()
    path = tiny_dataset / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = {float(f.pts * stream.time_base): f.to_ndarray(format="rgb24") for f in container.decode(stream)}
    times = np.array(sorted(decoded))
    assert len(times) == info["total_frames"]
    for _, ep in episodes.iterrows():
        rows = data[data["episode_index"] == ep["episode_index"]]
        query = ep[f"videos/{key}/from_timestamp"] + rows["timestamp"].to_numpy(dtype=np.float64)
        nearest = np.abs(times[None, :] - query[:, None]).min(axis=1)
        assert nearest.max() < TOLERANCE_S
    # The first frame of every episode is the camera's first image (gray level 0).
    for _, ep in episodes.iterrows():
        start = float(ep[f"videos/{key}/from_timestamp"])
        frame = decoded[min(decoded, key=lambda t: abs(t - start))]
        assert abs(frame.mean() - image_level(0)) < 1.5


def test_stats_json(tiny_dataset):
    stats = json.loads((tiny_dataset / "meta" / "stats.json").read_text())
    data = pq.read_table(tiny_dataset / "data" / "chunk-000" / "file-000.parquet").to_pandas()
    state = np.stack(data["observation.state"].to_numpy())
    for name in ("min", "max", "mean", "std", "count", "q01", "q99"):
        assert name in stats["observation.state"], name
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats["observation.state"]["min"], state.min(0), atol=1e-6)
    assert stats["observation.state"]["count"] == [len(state)]
    image = stats["observation.images.cam_high"]
    assert np.asarray(image["mean"]).shape == (3, 1, 1)
    assert 0.0 <= np.asarray(image["min"]).min() <= np.asarray(image["max"]).max() <= 1.0
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "action"):
        assert key in stats
