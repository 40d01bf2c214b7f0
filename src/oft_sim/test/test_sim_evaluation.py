"""What evaluate measures and writes, without ROS: latency pairing, summary keys, artifacts."""

import json

import av
import numpy as np
import pytest

from oft_policy import names
from oft_sim.evaluation import (
    ChunkSeams,
    DriftTrace,
    EpisodeOutcome,
    ImageToCommandLatency,
    percentiles,
    plot_drift,
    summarize,
    write_json,
    write_video,
)


def test_latency_is_image_arrival_to_first_command_after_the_chunk():
    latency = ImageToCommandLatency()
    latency.on_image(stamp_ns=1_000, wall_s=10.0)
    latency.on_image(stamp_ns=2_000, wall_s=10.02)
    latency.on_command(10.01)  # no chunk yet: not a sample
    latency.on_chunk(observation_stamp_ns=1_000)
    latency.on_command(10.05)
    latency.on_command(10.07)  # only the first command after a chunk counts
    latency.on_chunk(observation_stamp_ns=9_999)  # an observation never seen
    latency.on_chunk(observation_stamp_ns=2_000)
    latency.clear_pending()  # episode boundary
    latency.on_command(11.0)
    assert np.allclose(latency.samples_ms, [50.0])
    assert latency.unmatched_chunks == 1


def test_summary_has_the_issue_keys(tmp_path):
    outcomes = [EpisodeOutcome(1000, True, 4, 300, 5.0), EpisodeOutcome(1001, False, 2, 400, 6.0)]
    trace = DriftTrace(1000)
    trace.add(0.02, 0.01, 0.05, 0.15)
    trace.add(0.04, 0.2, 0.05, 0.15)
    result = summarize(outcomes, 1000, [10.0, 20.0, 30.0], [0.0, 0.1], [trace])
    assert result["success_rate"] == 0.5 and result["episodes"] == 2 and result["first_seed"] == 1000
    assert set(result["image_to_command_ms"]) == {"p50", "p95", "p99"}
    assert set(result["executor_period_error_ms"]) == {"p50", "p99"}
    assert result["image_to_command_ms"]["p50"] == 20.0
    assert result["peak_drift"] == 0.2
    write_json(result, tmp_path / "out" / "eval.json")
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["success_rate"] == 0.5
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_rollout_pictures_put_the_cameras_side_by_side_with_step_and_reward():
    from oft_sim.evaluation import rollout_frames

    frames = {20 * k: {c: np.full((16, 20, 3), 40 * i, dtype=np.uint8) for i, c in enumerate(("a", "b", "c"))}
              for k in range(3)}
    frames[60] = {"a": np.zeros((16, 20, 3), dtype=np.uint8)}  # a step missing two cameras is left out
    pictures = rollout_frames(frames, {0: (1, 0.0), 40: (3, 2.0)}, ("a", "b", "c"), scale=3)
    assert len(pictures) == 3 and pictures[0].shape == (48, 180, 3)
    assert pictures[0][40, 5].tolist() == [0, 0, 0] and pictures[0][40, 65].tolist() == [40, 40, 40]
    assert pictures[0][5:15].max() > 200  # the label is written on the top band
    assert not np.array_equal(pictures[0][:18], pictures[2][:18])  # step 1 vs step 3 read differently


def test_video_and_drift_plot_are_real_files(tmp_path):
    frames = [np.full((48, 63, 3), 10 * i, dtype=np.uint8) for i in range(12)]
    path = write_video(frames, tmp_path / "rollout.mp4", fps=10)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12 and decoded[0].shape == (48, 62, 3)
    trace = DriftTrace(7)
    for i in range(20):
        trace.add(i * 0.02, 0.01 * i, 0.05, 0.15)
    png = plot_drift([trace], tmp_path / "drift.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_executor_period_error_is_measured_within_episodes_only():
    from oft_sim.closed_loop import LoopRecord

    record = LoopRecord()
    record.tick_stamps_s = [[1.00, 1.02, 1.04, 1.08], [1.12, 1.14]]  # one missed tick; 40 ms between episodes
    errors = record.period_errors_ms(realtime=False)
    assert len(errors) == 4 and max(errors) == pytest.approx(20.0) and sorted(errors)[:3] == pytest.approx([0, 0, 0])
    record.command_wall_s = [[5.0, 5.021]]
    assert record.period_errors_ms(realtime=True) == pytest.approx([1.0])


def _ramp_chunk(sequence, stamp_s, offset, rows=10, step=0.002):
    from oft_policy.runtime import Chunk

    values = offset + step * np.arange(rows)[:, None] * np.ones(len(names.ALOHA_JOINT_NAMES))
    return Chunk.from_rows(values, names.ALOHA_JOINT_NAMES, sequence, stamp_s, stamp_s + 0.02, 0.02)


def test_chunk_seams_measure_the_jump_where_a_newer_chunk_takes_over():
    """Two ramps of 2 mrad per tick; the second, observed 5 ticks later, starts 30 mrad above the
    first's row at the same tick. Replace: one seam of 30 mrad; blend (0.7 new) shrinks the jump."""
    first, second = _ramp_chunk(1, 10.0, 0.0), _ramp_chunk(2, 10.1, 0.040)
    replace = ChunkSeams(names.ALOHA_JOINT_NAMES, 0.02, "replace")
    replace.add_episode([second, first], last_tick_s=10.3)
    summary = replace.summary()
    assert summary["seams"] == 1
    # first runs rows 0..4 (10.02..10.10); second's row 0 is due at 10.12, first's row 4 ran at 10.10 (8 mrad).
    assert summary["seam_jump_mrad"]["p50"] == pytest.approx(40.0 - 8.0)
    assert summary["within_chunk_step_mrad"]["p99"] == pytest.approx(2.0)
    assert summary["seam_p99_over_step_p99"] == pytest.approx(16.0)
    blend = ChunkSeams(names.ALOHA_JOINT_NAMES, 0.02, "blend", blend_weight=0.7)
    blend.add_episode([first, second], last_tick_s=10.3)
    assert blend.summary()["seam_jump_mrad"]["p50"] == pytest.approx(0.7 * 40.0 + 0.3 * 10.0 - 8.0)
