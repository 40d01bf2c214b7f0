"""Fine-tune an OFT policy on a LeRobotDataset v3.0, on one process or under torchrun (DDP).

Schedules and data order are pure functions of the optimizer step, so a run
resumed from its latest checkpoint continues exactly: the learning rate is
recomputed from the step (linear warmup, then cosine decay to ``min_lr``), and
the sample at global position p is ``permutation(seed, epoch)[p mod N]``.

Checkpoints: ``<output_dir>/checkpoints/step_XXXXXXX/`` holding ``policy/``
(the policy checkpoint, oft_policy.checkpoint format, normalizer inside) and
``training_state.pt`` (trainable weights, optimizer, step). Each is built in a
temporary sibling directory and renamed into place, so a crash never leaves a
partial checkpoint; ``resume`` takes the newest complete one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from oft_policy.calibration import (
    CONVENTION_KEY, ConventionError, calibration_mismatch, check_convention, convention_record,
)
from oft_policy.checkpoint import load_weights_only, save_checkpoint
from oft_policy.model import OFTConfig, build_model, build_tokenizer, chunk_regression_loss
from oft_policy.model.preprocess import preprocess_images, tokenize_prompts
from oft_policy.normalization import NormalizationStats
from tqdm import tqdm

from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.lerobot_format import image_key
from oft_training.train_config import ACTION_HEADS, TrainConfigError, dump

LOG = logging.getLogger(__name__)
CHECKPOINTS_DIR = "checkpoints"
POLICY_DIR = "policy"
TRAINING_STATE = "training_state.pt"
METRICS_FILE = "metrics.jsonl"


def lr_at(step: int, lr: float, min_lr: float, warmup_steps: int, max_steps: int, first_cycle_steps: int = 0) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to ``min_lr``.

    With ``first_cycle_steps``, the steps before it follow a cosine that ends there and the later
    ones the cosine that ends at ``max_steps``: the schedule of a finished run of
    ``first_cycle_steps`` resumed with a larger ``max_steps``.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    end = first_cycle_steps if step < first_cycle_steps else max_steps
    progress = min(1.0, (step - warmup_steps) / max(1, end - warmup_steps))
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class SampleOrder:
    """Sample index at a global position: a fresh seeded permutation each epoch."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self._cache = size, seed, {}

    def __call__(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        perm = self._cache.get(epoch)
        if perm is None:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = self._cache[epoch] = torch.randperm(self.size, generator=generator).tolist()
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
        return perm[offset]


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def setup_distributed(config: dict, device: torch.device) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    backend = config["ddp"]["backend"]
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return Distributed(torch.distributed.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(config: dict, local_rank: int) -> torch.device:
    name = config["training"]["device"]
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainConfigError("training.device is cuda but no GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_oft_config(config: dict, table: EpisodeTable) -> OFTConfig:
    """The model section and the dataset's names -> OFTConfig (action_dim must agree)."""
    model = config["model"]
    if model["action_dim"] != table.action_dim:
        raise TrainConfigError(
            f"dataset {table.root} has action_dim {table.action_dim} but config model.action_dim is {model['action_dim']}"
        )
    cameras = tuple(model["cameras"] or table.cameras)
    missing = [c for c in cameras if c not in table.cameras]
    if missing:
        raise TrainConfigError(f"dataset {table.root} has no camera {', '.join(missing)} (has {', '.join(table.cameras)})")
    joint_names = table.joint_names if len(table.joint_names) == table.action_dim else tuple(
        f"joint_{i}" for i in range(table.action_dim))
    return OFTConfig(
        backbone=model["backbone"], openvla_path=model["openvla_path"], decoding=ACTION_HEADS[model["action_head"]],
        chunk_size=model["chunk_size"], action_dim=model["action_dim"], camera_names=cameras, joint_names=joint_names,
        control_period_s=1.0 / table.fps, use_proprio=model["use_proprio"], use_film=model["use_film"],
        image_size=model["image_size"], center_crop_scale=model["center_crop_scale"], finetune=model["finetune"],
        lora_rank=model["lora_rank"], lora_dropout=model["lora_dropout"], freeze_vision=model["freeze_vision_backbone"],
        gradient_checkpointing=model["gradient_checkpointing"], attn_implementation=model["attn_implementation"],
        head_hidden_dim=model["head_hidden_dim"], tiny_llm_hidden=model["tiny_llm_hidden"],
        tiny_llm_layers=model["tiny_llm_layers"], tiny_llm_heads=model["tiny_llm_heads"], tiny_vision=model["tiny_vision"],
        max_prefix_steps=model["max_prefix_steps"],
        extra={"dataset": str(table.root), "camera_shapes": camera_shapes(table, cameras)},
    )


def camera_shapes(table: EpisodeTable, cameras) -> dict:
    """[height, width] each camera was recorded at, so an evaluation can render the same."""
    features = table.info["features"]
    return {cam: list(features[image_key(cam)]["shape"][:2]) for cam in cameras}


def split_episodes(table: EpisodeTable, val_episodes: int) -> tuple:
    episodes = sorted(int(e) for e in table.episodes.index)
    if val_episodes <= 0:
        return episodes, episodes
    if val_episodes >= len(episodes):
        raise TrainConfigError(
            f"data.val_episodes={val_episodes} leaves no training episode (dataset has {len(episodes)}); "
            "use data.val_episodes=0 to validate on the training episodes"
        )
    return episodes[:-val_episodes], episodes[-val_episodes:]


def dataset_convention(dataset_root: Path) -> dict:
    """The convention a dataset records (meta/oft_export.json); a dataset without that file (e.g. one
    of LeRobot's ALOHA datasets) is taken to be in the ALOHA dataset convention it was published in."""
    from oft_training.exporter import PROVENANCE_PATH

    provenance = Path(dataset_root) / PROVENANCE_PATH
    if not provenance.is_file():
        return convention_record(None)
    record = json.loads(provenance.read_text()).get(CONVENTION_KEY)
    try:
        return check_convention(record, f"dataset {dataset_root}")
    except ConventionError as exc:
        raise TrainConfigError(str(exc)) from exc


def check_stats_convention(stats: NormalizationStats, stats_path, dataset: dict, dataset_root: Path) -> None:
    """Refuse a normalizer in another convention than the dataset, or fitted with another calibration."""
    try:
        fitted = check_convention(stats.convention, f"normalizer {stats_path}")
    except ConventionError as exc:
        raise TrainConfigError(str(exc)) from exc
    reason = calibration_mismatch(fitted, dataset)
    if reason:
        raise TrainConfigError(f"normalizer {stats_path} and dataset {dataset_root}: {reason}; "
                               "fit and export with the same --calibration")


def load_stats(config: dict, table: EpisodeTable, train_episodes, joint_names) -> NormalizationStats:
    path = config["data"]["stats_path"]
    convention = dataset_convention(table.root)
    if path:
        stats = NormalizationStats.load(path)
        if stats.dim != table.action_dim:
            raise TrainConfigError(f"stats {path} have {stats.dim} dims, the dataset {table.action_dim}")
        check_stats_convention(stats, path, convention, table.root)
        return stats
    rows = np.concatenate([np.arange(*table.episode_range(e)) for e in train_episodes])
    return NormalizationStats.fit(table.state[rows], table.action[rows], joint_names, config["data"]["action_scheme"],
                                  convention=convention)


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    root = output_dir / CHECKPOINTS_DIR
    complete = sorted(p for p in root.glob("step_*") if (p / TRAINING_STATE).is_file()) if root.is_dir() else []
    return complete[-1] if complete else None


class Batcher:
    """Turns dataset samples into model inputs (augmented when training)."""

    def __init__(self, oft_config: OFTConfig, tokenizer, device: torch.device, proprio_noise_std: float = 0.0):
        self.config, self.tokenizer, self.device = oft_config, tokenizer, device
        self.proprio_noise_std = float(proprio_noise_std)

    def pixels(self, images, train: bool, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """[B, cameras, 6, S, S] from one list of camera frames per sample."""
        cfg = self.config
        return torch.stack([
            preprocess_images(frames, cfg.image_size, cfg.center_crop_scale, train=train, generator=generator)
            for frames in images
        ])

    def prompts(self, instructions) -> tuple:
        return tokenize_prompts(self.tokenizer, list(instructions), self.config.prompt_template)

    def __call__(self, samples, train: bool, generator: Optional[torch.Generator] = None) -> dict:
        pixels = self.pixels([s["images"] for s in samples], train, generator)
        input_ids, attention_mask = self.prompts(s["instruction"] for s in samples)
        proprio = torch.stack([s["proprio"] for s in samples])
        if train and self.proprio_noise_std > 0:
            # Blurs the arm pose so the policy cannot read the task's progress (and where the arm
            # is heading) off the pose alone: it has to look at the images.
            proprio = proprio + self.proprio_noise_std * torch.randn(proprio.shape, generator=generator, dtype=proprio.dtype)
        to = lambda t: t.to(self.device, non_blocking=True)  # noqa: E731
        batch = {
            "pixel_values": to(pixels), "input_ids": to(input_ids), "attention_mask": to(attention_mask),
            "proprio": to(proprio),
            "actions": to(torch.stack([s["actions"] for s in samples])),
            "pad_mask": to(torch.stack([s["pad_mask"] for s in samples])),
        }
        if self.config.max_prefix_steps:
            batch.update(self.prefix(batch["actions"], train, generator))
        return batch

    def prefix(self, actions: torch.Tensor, train: bool, generator: Optional[torch.Generator]) -> dict:
        """Prefix conditioning: each training sample continues P ~ U{0..max_prefix_steps} of its own target
        rows (the actions committed during an inference delay); the loss covers the rest. Validation: P = 0."""
        limit = self.config.max_prefix_steps
        steps = (torch.randint(0, limit + 1, (actions.shape[0],), generator=generator) if train
                 else torch.zeros(actions.shape[0], dtype=torch.long)).to(actions.device)
        return {"prefix": actions[:, :limit], "prefix_steps": steps}


def model_inputs(batch: dict) -> tuple:
    """The model's positional inputs from a Batcher batch (with the prefix when it has one)."""
    inputs = (batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["proprio"])
    return inputs + ((batch["prefix"], batch["prefix_steps"]) if "prefix" in batch else ())


def loss_mask(batch: dict) -> torch.Tensor:
    """True where a row counts for nothing: padding past the episode end, or a committed prefix row."""
    mask = batch["pad_mask"]
    if "prefix_steps" in batch:
        rows = torch.arange(mask.shape[1], device=mask.device)[None, :]
        mask = mask | (rows < batch["prefix_steps"][:, None])
    return mask


class MetricsLog:
    """metrics.jsonl always; tensorboard or wandb on top (main process only)."""

    def __init__(self, output_dir: Path, config: dict, enabled: bool):
        self.enabled = enabled
        self.path = output_dir / METRICS_FILE
        self.backend = None
        if not enabled:
            return
        kind = config["training"]["logger"]
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.backend = SummaryWriter(str(output_dir / "tensorboard"))
        elif kind == "wandb":
            try:
                import wandb
            except ImportError as exc:
                raise TrainConfigError("training.logger=wandb needs the wandb package installed") from exc
            self.backend = wandb.init(project=config["training"]["wandb_project"], config=config, dir=str(output_dir))

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")
        if self.backend is None:
            return
        if hasattr(self.backend, "add_scalar"):
            for key, value in values.items():
                self.backend.add_scalar(key, value, step)
        else:
            self.backend.log(values, step=step)

    def close(self) -> None:
        if self.backend is not None:
            (self.backend.close if hasattr(self.backend, "close") else self.backend.finish)()


def evaluate_l1(model, dataset: ChunkDataset, batcher: Batcher, batch_size: int, max_samples: int, autocast) -> float:
    """Mean L1 (normalized action units, padding excluded) on evenly spaced samples."""
    count = min(len(dataset), max_samples)
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    was_training = model.training
    model.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, count, batch_size):
            batch = batcher([dataset[int(i)] for i in indices[start:start + batch_size]], train=False)
            with autocast():
                pred = model(*model_inputs(batch))
            valid = float((~batch["pad_mask"]).sum())
            total += float(chunk_regression_loss(pred.float(), batch["actions"], batch["pad_mask"], "l1")) * valid
            weight += valid
    model.train(was_training)
    return total / max(weight, 1.0)


def save_training_checkpoint(output_dir: Path, step: int, model, oft_config, stats, tokenizer, optimizer, config) -> Path:
    final = output_dir / CHECKPOINTS_DIR / f"step_{step:07d}"
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        save_checkpoint(staging / POLICY_DIR, model, oft_config, stats, tokenizer,
                        extra={"step": step, "dataset": config["data"]["dataset"]})
        torch.save({
            "step": step, "model": {k: v.cpu() for k, v in model.trainable_state_dict().items()},
            "optimizer": optimizer.state_dict(), "config": config,
        }, staging / TRAINING_STATE)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


@dataclass
class TrainResult:
    output_dir: Path
    final_checkpoint: Path
    start_step: int
    steps: int
    samples_per_s: float
    last_val_l1: Optional[float]
    first_val_l1: Optional[float]


def train(config: dict, resume: bool = False, progress: bool = True) -> TrainResult:
    """Run (or resume) a training job described by a validated config dict."""
    tcfg, ocfg = config["training"], config["optimizer"]
    if tcfg["threads"]:
        torch.set_num_threads(int(tcfg["threads"]))
    # Everything that can reject the inputs runs before any file is written.
    table = EpisodeTable(config["data"]["dataset"])
    train_eps, val_eps = split_episodes(table, int(config["data"]["val_episodes"]))
    device = resolve_device(config, int(os.environ.get("LOCAL_RANK", "0")))
    oft_config = build_oft_config(config, table)
    stats = load_stats(config, table, train_eps, oft_config.joint_names)
    output_dir = Path(tcfg["output_dir"])
    checkpoint = latest_checkpoint(output_dir) if resume else None
    if resume and checkpoint is None:
        raise TrainConfigError(f"--resume: no complete checkpoint under {output_dir / CHECKPOINTS_DIR}")
    if not resume and latest_checkpoint(output_dir) is not None:
        raise TrainConfigError(f"{output_dir} already holds checkpoints; pass --resume or choose another output_dir")
    cache = int(config["data"]["cache_bytes"])
    train_set = ChunkDataset(table.root, oft_config.chunk_size, stats, train_eps, oft_config.camera_names, cache, table)
    val_set = ChunkDataset(table.root, oft_config.chunk_size, stats, val_eps, oft_config.camera_names, cache, table)

    dist = setup_distributed(config, device)
    try:
        return _train_loop(config, dist, device, oft_config, stats, train_set, val_set, output_dir, checkpoint, progress)
    finally:
        if dist.world > 1:
            torch.distributed.destroy_process_group()


def _train_loop(config, dist, device, oft_config, stats, train_set, val_set, output_dir, checkpoint, progress):
    tcfg, ocfg, dcfg = config["training"], config["optimizer"], config["ddp"]
    seed, batch_size, accum, max_steps = tcfg["seed"], tcfg["batch_size"], tcfg["grad_accumulation"], tcfg["max_steps"]
    # Weights in the backbone's training dtype: fp32 on CPU, bf16 on GPU (as openvla-oft trains).
    model = build_model(oft_config, device=device, seed=seed, load_base_weights=config["model"]["load_base_weights"])
    tokenizer = build_tokenizer(oft_config)
    batcher = Batcher(oft_config, tokenizer, device, tcfg["proprio_noise_std"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=ocfg["lr"], betas=tuple(ocfg["betas"]), weight_decay=ocfg["weight_decay"])
    start_step = 0
    if checkpoint is None and tcfg["init_from"]:
        warm_start = load_weights_only(model, tcfg["init_from"])
        if dist.is_main:
            print(f"weights from {tcfg['init_from']} ({warm_start})")
    if checkpoint is not None:
        state = torch.load(checkpoint / TRAINING_STATE, map_location=device, weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start_step = int(state["step"])
    if dist.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(dump(config))
        for stale in (output_dir / CHECKPOINTS_DIR).glob(".step_*"):  # staging left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()
    log = MetricsLog(output_dir, config, dist.is_main)
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=dcfg["find_unused_parameters"], gradient_as_bucket_view=dcfg["gradient_as_bucket_view"],
        )
    use_bf16 = device.type == "cuda" and tcfg["bf16"]
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext
    order = SampleOrder(len(train_set), seed)
    lcfg = config["loss"]
    first_val = last_val = None
    samples, started = 0, time.perf_counter()
    net.train()
    bar = tqdm(range(start_step, max_steps), desc="training", unit="step", disable=not (progress and dist.is_main),
               initial=start_step, total=max_steps)
    final = None
    for step in bar:
        lr = lr_at(step, ocfg["lr"], ocfg["min_lr"], ocfg["warmup_steps"], max_steps, ocfg["first_cycle_steps"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for micro in range(accum):
            base = ((step * accum + micro) * dist.world + dist.rank) * batch_size
            generator = torch.Generator().manual_seed(hash((seed, step, micro, dist.rank)) & 0x7FFFFFFF)
            picked = [train_set[order(base + j)] for j in range(batch_size)]
            batch = batcher(picked, train=tcfg["augment"], generator=generator)
            sync = nullcontext() if (dist.world == 1 or micro == accum - 1) else net.no_sync()
            with sync:
                with autocast():
                    pred = net(*model_inputs(batch))
                loss = chunk_regression_loss(pred.float(), batch["actions"], loss_mask(batch), lcfg["kind"], lcfg["huber_delta"])
                (loss / accum).backward()
            loss_sum += float(loss.detach())
            samples += batch_size * dist.world
        if ocfg["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(params, ocfg["max_grad_norm"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        values = {"train/loss": loss_sum / accum, "train/lr": lr}
        if done % tcfg["validate_every"] == 0 or done == max_steps or step == start_step:
            if dist.is_main:
                last_val = evaluate_l1(model, val_set, batcher, batch_size, config["data"]["max_val_samples"], autocast)
                first_val = last_val if first_val is None else first_val
                values["val/l1"] = last_val
            dist.barrier()
        if dist.is_main and (done % tcfg["log_every"] == 0 or "val/l1" in values or done == max_steps):
            values["train/samples_per_s"] = samples / max(time.perf_counter() - started, 1e-9)
            log.log(done, values)
            bar.set_postfix(loss=f"{values['train/loss']:.4f}", lr=f"{lr:.2e}")
        if done % tcfg["checkpoint_every"] == 0 or done == max_steps:
            if dist.is_main:
                final = save_training_checkpoint(output_dir, done, model, oft_config, stats, tokenizer, optimizer, config)
            dist.barrier()
    log.close()
    elapsed = time.perf_counter() - started
    final = final or latest_checkpoint(output_dir)
    return TrainResult(output_dir, final, start_step, max_steps, samples / max(elapsed, 1e-9), last_val, first_val)
