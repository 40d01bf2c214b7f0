"""The vision warm-up stage: grasp keyframes, what it trains, and what it refuses."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import oft_training
from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.train_config import TrainConfigError, load_config
from oft_training.trainer import Batcher, Distributed, MetricsLog, build_oft_config, load_stats, split_episodes, train
from oft_training.vision_warmup import check_grasps, grasp_frames, grasp_keyframe, run_vision_warmup

TINY_CONFIG = Path(oft_training.__file__).resolve().parent / "configs" / "tiny_cpu.yaml"


def test_grasp_keyframe_is_the_first_open_to_closed_transition():
    open_close = np.array([0.1, 0.6, 0.9, 0.9, 0.2, 0.1, 0.8, 0.1])  # starts closed: that is no grasp
    steady_open = np.full(8, 0.9)
    actions = np.stack([open_close, steady_open], axis=1)
    assert grasp_keyframe(actions, [0, 1], np.array([0.5, 0.5])) == 4
    assert grasp_keyframe(actions, [1], np.array([0.5])) is None
    assert grasp_keyframe(actions[:, ::-1], [0, 1], np.array([0.5, 0.5])) == 4  # whichever gripper closes first
    assert grasp_keyframe(np.full((5, 1), 0.1), [0], np.array([0.5])) is None


def _setup(tiny_dataset, tmp_path, *overrides):
    config = load_config(TINY_CONFIG, [
        f"data.dataset={tiny_dataset}", f"training.output_dir={tmp_path / 'run'}", "training.logger=none",
        "model.freeze_vision_backbone=false", "training.augment=false", *overrides,
    ])
    table = EpisodeTable(tiny_dataset)
    train_eps, val_eps = split_episodes(table, 1)
    oft_config = build_oft_config(config, table)
    stats = load_stats(config, table, train_eps, oft_config.joint_names)
    datasets = [ChunkDataset(table.root, oft_config.chunk_size, stats, eps, oft_config.camera_names, table=table)
                for eps in (train_eps, val_eps)]
    return config, oft_config, datasets


def test_warmup_trains_tower_and_projector_and_leaves_the_llm(tiny_dataset, tmp_path):
    from oft_policy.model import build_model, build_tokenizer

    config, oft_config, (train_set, val_set) = _setup(tiny_dataset, tmp_path, "training.vision_warmup_steps=40")
    frames = grasp_frames(train_set, train_set.episode_ids)
    # The synthetic grippers close once, mid-episode: every frame before that is a warm-up frame.
    assert not frames.without_grasp and 0 < len(frames.frames) < len(train_set)
    assert len(np.unique(frames.frames[:, 0])) == len(train_set.episode_ids)
    model = build_model(oft_config, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    batcher = Batcher(oft_config, build_tokenizer(oft_config), torch.device("cpu"))
    result = run_vision_warmup(model, batcher, train_set, val_set, config, Distributed(),
                               MetricsLog(tmp_path, config, enabled=False), progress=False)
    assert result.steps == 40 and result.train_frames == len(frames.frames) and np.isfinite(result.val_l1)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert any(name.startswith("vision_backbone.") for name in changed)
    assert any(name.startswith("projector.") for name in changed)
    assert not [name for name in changed if name.startswith(("language_model.", "action_head.", "proprio_projector."))]


def test_train_runs_the_warmup_first_and_logs_it(tiny_dataset, tmp_path):
    config, _, _ = _setup(tiny_dataset, tmp_path, "training.vision_warmup_steps=6", "training.max_steps=2",
                          "training.log_every=3", "training.checkpoint_every=2")
    result = train(config, progress=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    warmup = [line for line in lines if "warmup/loss" in line]
    assert [line["step"] for line in warmup] == [3, 6]
    assert any("warmup/val_l1" in line for line in lines)
    assert result.final_checkpoint.name == "step_0000002"


def test_bad_input_no_grasp_or_negative_steps(tiny_dataset, tmp_path):
    with pytest.raises(TrainConfigError, match="vision_warmup_steps"):
        _setup(tiny_dataset, tmp_path, "training.vision_warmup_steps=-1")
    _, _, (train_set, _) = _setup(tiny_dataset, tmp_path)
    grippers = [i for i, name in enumerate(train_set.table.joint_names) if "gripper" in name]
    train_set.table.action[:, grippers] = 0.0  # grippers that never open
    with pytest.raises(TrainConfigError, match="no grasp pose to learn"):
        check_grasps(train_set)


@pytest.mark.slow
def test_warmup_under_ddp_two_processes(tiny_dataset, tmp_path, ros_env):
    """Two gloo workers: the warm-up's readout leaves the LLM unused, which DDP must be told."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "oft_training.cli.train", "--config", str(TINY_CONFIG), "--nproc-per-node", "2",
               f"data.dataset={tiny_dataset}", f"training.output_dir={out}", "training.vision_warmup_steps=4",
               "training.max_steps=2", "training.log_every=2", "training.batch_size=2", "model.freeze_vision_backbone=false"]
    done = subprocess.run(command, env=dict(ros_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "warmup/loss" in line] == [2, 4]
    assert any(np.isfinite(line.get("warmup/val_l1", np.nan)) for line in lines)
    assert (out / "checkpoints" / "step_0000002" / "policy").is_dir()
