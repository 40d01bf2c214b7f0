"""Grasp-pose supervision: grasp keyframes, the vision warm-up and the slot loss, what they train and refuse."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import oft_training
from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.grasp_pose import check_grasps, grasp_frames, grasp_keyframe, run_vision_warmup
from oft_training.train_config import TrainConfigError, load_config
from oft_training.trainer import Batcher, Distributed, MetricsLog, build_oft_config, load_stats, split_episodes, train

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
    result = run_vision_warmup(model, batcher, train_set, val_set, check_grasps(train_set), config, Distributed(),
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
def test_warmup_and_slot_loss_under_ddp_two_processes(tiny_dataset, tmp_path, ros_env):
    """Two gloo workers: the warm-up's readout leaves the LLM unused, which DDP must be told; the
    slot loss's readout trains beside the policy in one DDP module."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "oft_training.cli.train", "--config", str(TINY_CONFIG), "--nproc-per-node", "2",
               f"data.dataset={tiny_dataset}", f"training.output_dir={out}", "training.vision_warmup_steps=4",
               "training.max_steps=2", "training.log_every=2", "training.batch_size=2", "model.freeze_vision_backbone=false",
               "training.grasp_pose_loss_weight=1.0"]
    done = subprocess.run(command, env=dict(ros_env, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "warmup/loss" in line] == [2, 4]
    assert any(np.isfinite(line.get("warmup/val_l1", np.nan)) for line in lines)
    assert np.isfinite([line["train/grasp_pose_loss"] for line in lines if "train/loss" in line]).all()
    assert (out / "checkpoints" / "step_0000002" / "policy").is_dir()


def test_slot_loss_trains_the_slot_path_and_resumes_with_its_readout(tiny_dataset, tmp_path):
    """The auxiliary grasp-pose loss reaches the policy through its action slots (the LLM changes
    beyond what the action loss alone does), is logged, and a resumed run restores its readout."""
    common = ["training.max_steps=4", "training.log_every=1", "training.checkpoint_every=2", "training.validate_every=1000"]
    runs = {}
    for name, weight in (("plain", 0.0), ("slots", 1.0)):
        config, _, _ = _setup(tiny_dataset, tmp_path / name, f"training.grasp_pose_loss_weight={weight}", *common)
        train(config, progress=False)
        runs[name] = tmp_path / name / "run"
    lines = [json.loads(line) for line in (runs["slots"] / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(line["train/grasp_pose_loss"]) for line in lines if "train/loss" in line)
    weights = {name: torch.load(run / "checkpoints" / "step_0000004" / "training_state.pt", weights_only=False)
               for name, run in runs.items()}
    assert "grasp_readout" in weights["slots"] and "grasp_readout" not in weights["plain"]
    llm = [k for k in weights["plain"]["model"] if k.startswith("language_model.")]
    assert any(not torch.equal(weights["plain"]["model"][k], weights["slots"]["model"][k]) for k in llm)

    # Resume from step 2: the readout comes back from the training state, the run ends at step 4 again.
    shutil.rmtree(runs["slots"] / "checkpoints" / "step_0000004")
    config, _, _ = _setup(tiny_dataset, tmp_path / "slots", "training.grasp_pose_loss_weight=1.0", *common)
    assert train(config, resume=True, progress=False).final_checkpoint.name == "step_0000004"
    # A run trained without the loss cannot be resumed with it: its optimizer never held the readout.
    config, _, _ = _setup(tiny_dataset, tmp_path / "plain", "training.grasp_pose_loss_weight=1.0", *common)
    with pytest.raises(TrainConfigError, match="trained without training.grasp_pose_loss_weight"):
        train(config, resume=True, progress=False)


def test_slot_loss_counts_only_frames_before_the_grasp(tiny_dataset, tmp_path):
    from oft_policy.model import build_model

    from oft_training.grasp_pose import SlotGraspLoss

    _, oft_config, (train_set, _) = _setup(tiny_dataset, tmp_path)
    loss = SlotGraspLoss(build_model(oft_config, seed=0), check_grasps(train_set), torch.device("cpu"))
    episode = train_set.episode_ids[0]
    key, label = loss.grasps[episode]
    target = loss.standardize(label[None])
    before, after = {"episode_index": episode, "frame_index": key - 1}, {"episode_index": episode, "frame_index": key}
    assert float(loss(target.clone(), [before])) == 0.0
    assert float(loss(target + 1.0, [before])) == pytest.approx(1.0)
    assert float(loss(target + 1.0, [after])) == 0.0  # after the grasp there is nothing to predict
    assert float(loss(torch.cat([target + 1.0, target + 3.0]), [before, after])) == pytest.approx(1.0)


def test_bad_input_slot_loss_weight_and_decoding(tiny_dataset, tmp_path):
    for bad in (-0.5, "x", True):
        with pytest.raises(TrainConfigError, match="grasp_pose_loss_weight must be a number >= 0"):
            _setup(tiny_dataset, tmp_path, f"training.grasp_pose_loss_weight={bad}")
    config, _, _ = _setup(tiny_dataset, tmp_path, "training.grasp_pose_loss_weight=1", "model.action_head=last_token_mlp")
    with pytest.raises(TrainConfigError, match="needs parallel decoding"):
        train(config, progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
