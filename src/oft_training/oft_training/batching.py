"""Dataset samples -> model inputs and the loss mask (augmentation, proprio noise, committed prefixes), and
the validation L1."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from oft_policy.model import OFTConfig, chunk_regression_loss
from oft_policy.model.preprocess import preprocess_images, tokenize_prompts

from oft_training.dataset import ChunkDataset


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
