"""Grasp-pose supervision: make the policy look at the object it must grasp.

Why: a backbone trained from scratch on a few dozen demos keeps an object's position at every
stage (tower, projector, LLM states), yet the policy's action slots never learn to gather it:
the L1 loss settles on the average trajectory first, and the proprio then tells the policy where
along that trajectory it is (docs/experiments/2026-11-25-localization-readouts.md).

The label is each demo's grasp pose: the action at the demo's first gripper closure, for every
frame before that closure. Every demo of a pick task has it; no privileged simulator state is used.
Two uses, each a training option:
- a warm-up stage (``training.vision_warmup_steps``) trains the vision tower and projector,
  through a per-position linear readout of the patch tokens, to predict it, so that the object
  stands out in the tokens before the policy trains;
- an auxiliary loss (``training.grasp_pose_loss_weight``) predicts it from the action slots'
  final states during the policy's training, so that the slots' attention gathers the object.
Both readouts are dropped: checkpoints keep the policy's architecture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from oft_training.dataset import ChunkDataset
from oft_training.train_config import TrainConfigError

LOG = logging.getLogger(__name__)
# Label dims that vary less than this across demos (normalized action units, range [-1, 1]) are
# not scaled up: the other arm's pose at the grasp is near constant, and amplifying its jitter
# would drown the signal.
LABEL_STD_FLOOR = 0.05
READOUT_WIDTH = 16
MAX_EVAL_FRAMES = 256


def gripper_columns(joint_names: Sequence[str]) -> list:
    return [i for i, name in enumerate(joint_names) if "gripper" in name]


def grasp_keyframe(actions: np.ndarray, columns: Sequence[int], thresholds: np.ndarray) -> Optional[int]:
    """First frame at which any of the gripper ``columns`` goes from open (>= threshold) to closed."""
    closed = actions[:, columns] < thresholds
    closing = closed[1:] & ~closed[:-1]
    hits = np.flatnonzero(closing.any(axis=1))
    return int(hits[0]) + 1 if hits.size else None


@dataclass
class GraspFrames:
    """(episode, frame) of every frame before an episode's first grasp, and the normalized action at it."""

    frames: np.ndarray  # [N, 2] int: episode, frame within the episode
    labels: np.ndarray  # [N, action_dim] float32
    without_grasp: list  # episodes whose grippers never close
    by_episode: dict  # episode -> (grasp keyframe, normalized action at it)


def episode_grasps(dataset: ChunkDataset, episodes: Sequence[int]) -> dict:
    """{episode: (grasp keyframe, normalized action at it)} for each of ``episodes`` whose grippers close."""
    table, stats = dataset.table, dataset.stats
    columns = gripper_columns(table.joint_names)
    if not columns:
        raise TrainConfigError(f"grasp-pose supervision needs gripper joints; {table.root} names none: {table.joint_names}")
    low, high = (bound[columns] for bound in stats.action_bounds)
    thresholds = 0.5 * (low + high)
    grasps = {}
    for episode in episodes:
        start, end = table.episode_range(episode)
        key = grasp_keyframe(table.action[start:end], columns, thresholds)
        if key is not None:
            grasps[int(episode)] = (key, stats.normalize_action(table.action[start + key]).astype(np.float32))
    return grasps


def grasp_frames(dataset: ChunkDataset, episodes: Sequence[int]) -> GraspFrames:
    grasps = episode_grasps(dataset, episodes)
    frames = [(episode, k) for episode, (key, _) in grasps.items() for k in range(key)]
    labels = [label for key, label in grasps.values() for _ in range(key)]
    without = [int(e) for e in episodes if int(e) not in grasps]
    frames = np.array(frames, dtype=np.int64).reshape(-1, 2)
    labels = np.array(labels, dtype=np.float32).reshape(len(frames), dataset.table.action_dim)
    return GraspFrames(frames, labels, without, grasps)


def check_grasps(train_set: ChunkDataset) -> GraspFrames:
    """The training episodes' grasp frames; refuses a dataset with no grasp at all."""
    frames = grasp_frames(train_set, train_set.episode_ids)
    if not len(frames.frames):
        raise TrainConfigError(f"grasp-pose supervision: no training episode of {train_set.table.root} closes a gripper "
                               "after opening it, so there is no grasp pose to learn; set training.vision_warmup_steps=0 "
                               "and training.grasp_pose_loss_weight=0")
    if frames.without_grasp:
        LOG.warning("grasp-pose supervision leaves out episodes that never close a gripper: %s", frames.without_grasp)
    return frames


class TokenReadout(nn.Module):
    """Per-position linear readout: each token's own features -> a few numbers, concatenated, -> label.
    No pooling and no attention, so a position can only be read where the tokens carry it."""

    def __init__(self, token_dim: int, num_tokens: int, label_dim: int):
        super().__init__()
        self.per_token = nn.Linear(token_dim, READOUT_WIDTH)
        self.out = nn.Linear(READOUT_WIDTH * num_tokens, label_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.out(nn.functional.gelu(self.per_token(tokens.float())).flatten(1))


class Standardizer:
    """Label dims to zero mean and unit spread over the training frames (spread floored at LABEL_STD_FLOOR)."""

    def __init__(self, labels: np.ndarray, device: torch.device):
        self.center, self.scale = labels.mean(0), np.maximum(labels.std(0), LABEL_STD_FLOOR)
        self.device = device

    def __call__(self, labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((labels - self.center) / self.scale).float().to(self.device)


class WarmupNet(nn.Module):
    def __init__(self, policy, readout: TokenReadout):
        super().__init__()
        self.policy, self.readout = policy, readout

    def forward(self, pixel_values, input_ids, attention_mask):
        return self.readout(self.policy.patch_tokens(pixel_values, input_ids, attention_mask))


@dataclass
class WarmupResult:
    steps: int
    train_frames: int
    val_l1: float  # standardized label units, held-out episodes
    blind_val_l1: float  # always predicting the training mean


def _inputs(batcher, dataset: ChunkDataset, frames: np.ndarray, train: bool, generator=None):
    images = [[cam[k] for cam in dataset.episode_frames(int(e))] for e, k in frames]
    input_ids, attention_mask = batcher.prompts(dataset.table.tasks[int(e)] for e, _ in frames)
    to = lambda t: t.to(batcher.device)  # noqa: E731
    return to(batcher.pixels(images, train, generator)), to(input_ids), to(attention_mask)


def run_vision_warmup(model, batcher, train_set: ChunkDataset, val_set: ChunkDataset, train_frames: GraspFrames,
                      config: dict, dist, log, progress: bool = True) -> WarmupResult:
    """Train tower and projector (whatever of them is trainable) through a fresh readout; drop it.
    ``train_frames``: :func:`check_grasps` of ``train_set``."""
    tcfg, ocfg = config["training"], config["optimizer"]
    steps, batch_size, seed = int(tcfg["vision_warmup_steps"]), int(tcfg["batch_size"]), int(tcfg["seed"])
    standardize = Standardizer(train_frames.labels, batcher.device)
    tokens = model.config.num_cameras * model.vision_backbone.num_patches
    readout = TokenReadout(model.projector.fc3.out_features, tokens, train_frames.labels.shape[1]).to(batcher.device)
    net = WarmupNet(model, readout)
    if dist.world > 1:  # the LLM's layers take no part: unused parameters are expected
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[batcher.device.index] if batcher.device.type == "cuda" else None,
            find_unused_parameters=True)
    # Only the vision side and the readout step; the prompt embeddings (FiLM's input) stay as built.
    trained = (model.vision_backbone, model.projector, readout)
    params = [p for module in trained for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=ocfg["lr"], betas=tuple(ocfg["betas"]), weight_decay=ocfg["weight_decay"])
    ramp = max(1, min(int(ocfg["warmup_steps"]), steps // 10))
    rng = np.random.default_rng([seed, dist.rank])
    model.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = ocfg["lr"] * min(1.0, (step + 1) / ramp)
        picks = rng.integers(0, len(train_frames.frames), batch_size)
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))  # augmentation, reproducible per rank
        inputs = _inputs(batcher, train_set, train_frames.frames[picks], bool(tcfg["augment"]), generator)
        loss = (net(*inputs) - standardize(train_frames.labels[picks])).abs().mean()
        net.zero_grad(set_to_none=True)  # the whole net: no stale gradient reaches the policy's training
        loss.backward()
        if ocfg["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(params, ocfg["max_grad_norm"])
        optimizer.step()
        if dist.is_main and ((step + 1) % tcfg["log_every"] == 0 or step + 1 == steps):
            log.log(step + 1, {"warmup/loss": float(loss.detach())})
            if progress and (step + 1) % max(1, steps // 10) == 0:
                LOG.info("vision warm-up step %d/%d: loss %.4f", step + 1, steps, float(loss.detach()))
    net.zero_grad(set_to_none=True)
    val_l1, blind = _held_out_l1(readout, model, batcher, val_set, standardize)
    if dist.is_main:
        log.log(steps, {"warmup/val_l1": val_l1, "warmup/blind_val_l1": blind})
        LOG.info("vision warm-up done: held-out grasp-pose L1 %.3f (always the mean: %.3f)", val_l1, blind)
    return WarmupResult(steps, len(train_frames.frames), val_l1, blind)


def _held_out_l1(readout, model, batcher, val_set: ChunkDataset, standardize) -> tuple:
    frames = grasp_frames(val_set, val_set.episode_ids)
    if not len(frames.frames):
        return float("nan"), float("nan")
    picks = np.linspace(0, len(frames.frames) - 1, min(len(frames.frames), MAX_EVAL_FRAMES)).round().astype(int)
    targets = standardize(frames.labels[picks])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        guesses = torch.cat([
            readout(model.patch_tokens(*_inputs(batcher, val_set, frames.frames[picks[i:i + 32]], train=False)))
            for i in range(0, len(picks), 32)
        ])
    model.train(was_training)
    return float((guesses - targets).abs().mean()), float(targets.abs().mean())


class SlotGraspNet(nn.Module):
    """The policy and a readout of its action slots' final states; forward -> (chunk, grasp-pose guess)."""

    def __init__(self, policy, readout: TokenReadout):
        super().__init__()
        self.policy, self.readout = policy, readout

    def forward(self, pixel_values, input_ids, attention_mask, proprio=None):
        chunk, slot_states = self.policy.parallel_forward(pixel_values, input_ids, attention_mask, proprio)
        return chunk, self.readout(slot_states)


class SlotGraspLoss:
    """The auxiliary loss: L1 between the slots' grasp-pose guess and the episode's grasp pose
    (standardized), over the samples of a batch that precede their episode's grasp."""

    def __init__(self, model, train_frames: GraspFrames, device: torch.device):
        """``train_frames``: :func:`check_grasps` of the training set."""
        if model.config.decoding != "parallel":
            raise TrainConfigError("training.grasp_pose_loss_weight needs parallel decoding (model.action_head=l1_regression)")
        self.grasps = train_frames.by_episode
        self.standardize = Standardizer(train_frames.labels, device)
        hidden = model.language_model.config.hidden_size
        readout = TokenReadout(hidden, model.config.num_action_tokens, model.config.action_dim).to(device)
        self.net = SlotGraspNet(model, readout)

    @property
    def readout(self) -> TokenReadout:
        return self.net.readout

    def __call__(self, guesses: torch.Tensor, samples: Sequence[dict]) -> torch.Tensor:
        rows, labels = [], []
        for i, sample in enumerate(samples):
            key, label = self.grasps.get(int(sample["episode_index"]), (0, None))
            if sample["frame_index"] < key:
                rows.append(i)
                labels.append(label)
        if not rows:  # keeps the readout in the graph, so DDP's reduction sees every parameter
            return guesses.sum() * 0.0
        return (guesses[rows] - self.standardize(np.stack(labels))).abs().mean()
