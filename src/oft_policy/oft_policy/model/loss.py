"""Chunk regression losses over padded action chunks (used by training)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

LOSS_KINDS = ("l1", "huber")


def chunk_regression_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    pad_mask: Optional[torch.Tensor] = None,
    kind: str = "l1",
    huber_delta: float = 1.0,
) -> torch.Tensor:
    """Mean L1 or Huber loss over the valid timesteps of [B, chunk, D] chunks.

    ``pad_mask`` is bool [B, chunk], True where the timestep lies past the
    episode end (padding); those timesteps contribute nothing. Returns a scalar;
    0 when every timestep is padding.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"pred and target must both be [B, chunk, D], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if kind == "l1":
        per_element = (pred - target).abs()
    elif kind == "huber":
        if huber_delta <= 0:
            raise ValueError(f"huber_delta must be positive, got {huber_delta}")
        per_element = F.huber_loss(pred, target, reduction="none", delta=huber_delta)
    else:
        raise ValueError(f"unknown loss kind {kind!r}; expected one of {LOSS_KINDS}")
    if pad_mask is None:
        return per_element.mean()
    if pad_mask.shape != pred.shape[:2]:
        raise ValueError(f"pad_mask must be [B, chunk] = {tuple(pred.shape[:2])}, got {tuple(pad_mask.shape)}")
    valid = (~pad_mask.bool()).unsqueeze(-1).to(per_element.dtype)
    count = valid.sum() * pred.shape[-1]
    return (per_element * valid).sum() / count.clamp(min=1.0)
