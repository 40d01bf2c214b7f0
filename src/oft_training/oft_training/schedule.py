"""The learning-rate schedule and the data order: pure functions of the optimizer step, so a run resumed
from its latest checkpoint continues exactly."""

from __future__ import annotations

import math

import torch


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
