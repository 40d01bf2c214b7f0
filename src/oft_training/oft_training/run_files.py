"""What a training run writes: checkpoints and metrics.

Checkpoints: ``<output_dir>/checkpoints/step_XXXXXXX/`` holding ``policy/`` (the policy checkpoint,
oft_policy.checkpoint format, normalizer inside) and ``training_state.pt`` (trainable weights, optimizer,
step). Each is built in a temporary sibling directory and renamed into place, so a crash never leaves a
partial checkpoint; ``resume`` takes the newest complete one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import torch
from oft_policy.checkpoint import save_checkpoint

CHECKPOINTS_DIR = "checkpoints"
POLICY_DIR = "policy"
TRAINING_STATE = "training_state.pt"
METRICS_FILE = "metrics.jsonl"


def latest_checkpoint(output_dir: Path) -> Optional[Path]:
    root = output_dir / CHECKPOINTS_DIR
    complete = sorted(p for p in root.glob("step_*") if (p / TRAINING_STATE).is_file()) if root.is_dir() else []
    return complete[-1] if complete else None


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
