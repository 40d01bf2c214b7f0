"""Damaged inputs are refused with a clear message and change nothing: bags, checkpoints,
normalization statistics, datasets. Each records its outcome for docs/reliability.md."""

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from oft_policy.checkpoint import STATS_FILENAME, CheckpointError, load_policy
from oft_policy.testing.checkpoints import make_tiny_checkpoint
from oft_policy.normalization import NormalizationStats, StatsError
from oft_policy.testing.reliability import record_outcome

import oft_training
from oft_training import bag_recovery, synthetic
from oft_training.cli import export as export_cli
from oft_training.cli import fit_normalizer as fit_cli
from oft_training.cli import train as train_cli
from oft_training.dataset import EpisodeTable
from oft_training.lerobot_format import DatasetFormatError

CAMERAS = ("cam_high",)


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def _refused_by_both(bag, tmp_path, capsys) -> list:
    """fit_normalizer and export each exit non-zero on ``bag`` and write nothing; their messages."""
    messages = []
    assert fit_cli.main(["--bags", str(bag), "--out", str(tmp_path / "stats.json")]) != 0
    messages.append(_last_error(capsys))
    assert export_cli.main(["--bags", str(bag), "--out", str(tmp_path / "ds"), "--instruction", "x",
                            "--cameras", *CAMERAS]) != 0
    messages.append(_last_error(capsys))
    assert not (tmp_path / "stats.json").exists() and not (tmp_path / "ds").exists()
    return messages


def test_truncated_and_garbled_bag_files_are_refused(tmp_path, capsys):
    source = synthetic.write_bag(tmp_path / "source", seconds=2.0, cameras=CAMERAS, image_hw=(96, 128))
    data = next(source.glob("*.mcap")).read_bytes()

    truncated = tmp_path / "truncated"
    shutil.copytree(source, truncated)
    next(truncated.glob("*.mcap")).write_bytes(data[: len(data) // 2])
    truncated_messages = _refused_by_both(truncated, tmp_path, capsys)
    for message in truncated_messages:
        assert "cannot open bag" in message and "truncated or damaged" in message, message

    # 64 random bytes at positions spread over the data section: each time a chunk's CRC refuses it.
    chunks = bag_recovery.scan_mcap(data).chunks
    rng = np.random.default_rng(3)
    refused = 0
    for k, chunk in enumerate(chunks):
        garbled = tmp_path / f"garbled_{k}"
        shutil.copytree(source, garbled)
        damaged = bytearray(data)
        offset = chunk.start + 100 + int(rng.integers(0, chunk.length - 200))
        damaged[offset: offset + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        next(garbled.glob("*.mcap")).write_bytes(bytes(damaged))
        for message in _refused_by_both(garbled, tmp_path, capsys):
            assert "is damaged: Chunk checksum mismatch" in message, message
        refused += 1
    record_outcome(
        "Truncated or garbled bag file",
        "fit_normalizer and export exit non-zero with the reason and write nothing",
        truncated=truncated_messages[0], garbled=message, garbled_chunks_refused=f"{refused} of {len(chunks)}")


def test_a_checkpoint_whose_weights_were_altered_refuses_to_load(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt", chunk_size=4)
    with open(checkpoint / "model.safetensors", "r+b") as handle:
        handle.seek(-64, 2)
        handle.write(bytes(64))
    with pytest.raises(CheckpointError, match="manifest") as refused:
        load_policy(checkpoint)
    record_outcome("Checkpoint weights altered", "load_policy refuses: content hash mismatch",
                   message=str(refused.value))


@pytest.mark.parametrize("damage", ["nan", "zero", "negative"])
def test_normalization_with_nan_zero_or_negative_scales_is_refused(tmp_path, damage):
    checkpoint = make_tiny_checkpoint(tmp_path / "ckpt", chunk_size=4)
    stats = json.loads((checkpoint / STATS_FILENAME).read_text())
    stats["proprio"]["std"][2] = {"nan": float("nan"), "zero": 0.0, "negative": -0.5}[damage]
    (checkpoint / STATS_FILENAME).write_text(json.dumps(stats))
    expected = {"nan": "NaN or Inf", "zero": "did not mark zero-variance", "negative": "negative"}[damage]
    with pytest.raises(StatsError, match=expected) as refused:
        NormalizationStats.load(checkpoint / STATS_FILENAME)
    with pytest.raises((CheckpointError, StatsError)):
        load_policy(checkpoint)
    record_outcome(f"normalization.json with a {damage} scale", "refused on load, by the checkpoint too",
                   message=str(refused.value))


def _shorten_video(path, keep: int) -> None:
    """Rewrite an mp4 with only its first ``keep`` frames."""
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(keep), source.decode(stream))]
        rate = stream.average_rate
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("mpeg4", rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
    tmp.replace(path)


def test_a_dataset_whose_parquet_and_video_disagree_is_refused(tiny_dataset, tmp_path, capsys):
    damaged = tmp_path / "dataset"
    shutil.copytree(tiny_dataset, damaged)
    video = sorted(damaged.glob("videos/*/*/*.mp4"))[0]
    total = json.loads((damaged / "meta" / "info.json").read_text())["total_frames"]
    _shorten_video(video, total // 2)
    with pytest.raises(DatasetFormatError, match="data and video disagree in length"):
        EpisodeTable(damaged)
    out = tmp_path / "run"
    config = Path(oft_training.__file__).resolve().parent / "configs" / "tiny_cpu.yaml"
    assert train_cli.main(["--config", str(config), f"data.dataset={damaged}", f"training.output_dir={out}",
                           "training.max_steps=1"]) != 0
    message = _last_error(capsys)
    assert "data and video disagree in length" in message and not out.exists()
    record_outcome("Dataset whose parquet and video disagree in length", "refused when the dataset is opened; "
                   "train exits non-zero before writing anything", message=message)
