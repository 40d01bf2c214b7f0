"""Fine-tune an OFT policy on a LeRobotDataset v3.0, on one process or under torchrun (DDP): the loop.

Its parts live beside it: the schedule and data order (`schedule`), processes and devices
(`distributed`), what the run reads (`run_inputs`), batches and the loss mask (`batching`), and
what it writes (`run_files`).
"""

from __future__ import annotations

import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from oft_policy.checkpoint import load_weights_only
from oft_policy.model import build_model, build_tokenizer, chunk_regression_loss
from tqdm import tqdm

from oft_training.batching import Batcher, evaluate_l1, loss_mask, model_inputs
from oft_training.dataset import ChunkDataset, EpisodeTable
from oft_training.distributed import resolve_device, setup_distributed
from oft_training.run_files import CHECKPOINTS_DIR, TRAINING_STATE, MetricsLog, latest_checkpoint, save_training_checkpoint
from oft_training.run_inputs import build_oft_config, load_stats, split_episodes
from oft_training.schedule import SampleOrder, lr_at
from oft_training.train_config import TrainConfigError, dump


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
    tcfg, ocfg = config["training"], config["optimizer"]
    batch_size, max_steps = tcfg["batch_size"], tcfg["max_steps"]
    model, tokenizer, optimizer, start_step = _model_and_optimizer(config, oft_config, device, dist, checkpoint)
    batcher = Batcher(oft_config, tokenizer, device, tcfg["proprio_noise_std"])
    _prepare_output(output_dir, config, dist)
    log = MetricsLog(output_dir, config, dist.is_main)
    net = _wrap_ddp(model, device, config, dist)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" and tcfg["bf16"] else nullcontext
    order = SampleOrder(len(train_set), tcfg["seed"])
    first_val = last_val = final = None
    samples, started = 0, time.perf_counter()
    net.train()
    bar = tqdm(range(start_step, max_steps), desc="training", unit="step", disable=not (progress and dist.is_main),
               initial=start_step, total=max_steps)
    for step in bar:
        lr = lr_at(step, ocfg["lr"], ocfg["min_lr"], ocfg["warmup_steps"], max_steps, ocfg["first_cycle_steps"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _optimizer_step(net, optimizer, batcher, train_set, order, step, config, dist, autocast)
        samples += batch_size * tcfg["grad_accumulation"] * dist.world
        done = step + 1
        values = {"train/loss": loss, "train/lr": lr}
        if done % tcfg["validate_every"] == 0 or done == max_steps or step == start_step:
            if dist.is_main:
                last_val = evaluate_l1(model, val_set, batcher, batch_size, config["data"]["max_val_samples"], autocast)
                first_val = last_val if first_val is None else first_val
                values["val/l1"] = last_val
            dist.barrier()
        if dist.is_main and (done % tcfg["log_every"] == 0 or "val/l1" in values or done == max_steps):
            values["train/samples_per_s"] = samples / max(time.perf_counter() - started, 1e-9)
            log.log(done, values)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if done % tcfg["checkpoint_every"] == 0 or done == max_steps:
            if dist.is_main:
                final = save_training_checkpoint(output_dir, done, model, oft_config, stats, tokenizer, optimizer, config)
            dist.barrier()
    log.close()
    elapsed = time.perf_counter() - started
    final = final or latest_checkpoint(output_dir)
    return TrainResult(output_dir, final, start_step, max_steps, samples / max(elapsed, 1e-9), last_val, first_val)


def _optimizer_step(net, optimizer, batcher, train_set, order, step, config, dist, autocast) -> float:
    """One optimizer step over the config's micro-batches; returns their mean loss."""
    tcfg, lcfg = config["training"], config["loss"]
    batch_size, accum = tcfg["batch_size"], tcfg["grad_accumulation"]
    loss_sum = 0.0
    for micro in range(accum):
        base = ((step * accum + micro) * dist.world + dist.rank) * batch_size
        generator = torch.Generator().manual_seed(hash((tcfg["seed"], step, micro, dist.rank)) & 0x7FFFFFFF)
        batch = batcher([train_set[order(base + j)] for j in range(batch_size)], train=tcfg["augment"], generator=generator)
        sync = nullcontext() if (dist.world == 1 or micro == accum - 1) else net.no_sync()
        with sync:
            with autocast():
                pred = net(*model_inputs(batch))
            loss = chunk_regression_loss(pred.float(), batch["actions"], loss_mask(batch), lcfg["kind"], lcfg["huber_delta"])
            (loss / accum).backward()
        loss_sum += float(loss.detach())
    if config["optimizer"]["max_grad_norm"]:
        torch.nn.utils.clip_grad_norm_([p for p in net.parameters() if p.requires_grad], config["optimizer"]["max_grad_norm"])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / accum


def _model_and_optimizer(config, oft_config, device, dist, checkpoint):
    """The model in the backbone's training dtype (fp32 on CPU, bf16 on GPU, as openvla-oft trains), its
    tokenizer and AdamW, restored from `checkpoint` or warm-started from training.init_from."""
    tcfg, ocfg = config["training"], config["optimizer"]
    model = build_model(oft_config, device=device, seed=tcfg["seed"], load_base_weights=tcfg["load_base_weights"])
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
    return model, build_tokenizer(oft_config), optimizer, start_step


def _prepare_output(output_dir: Path, config: dict, dist) -> None:
    if dist.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(dump(config))
        for stale in (output_dir / CHECKPOINTS_DIR).glob(".step_*"):  # staging left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()


def _wrap_ddp(model, device, config: dict, dist):
    if dist.world <= 1:
        return model
    ddp = config["ddp"]
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=ddp["find_unused_parameters"], gradient_as_bucket_view=ddp["gradient_as_bucket_view"],
    )
