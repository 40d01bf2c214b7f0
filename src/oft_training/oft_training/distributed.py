"""One process or many under torchrun (DDP): rank, world size and the device of this process."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from oft_training.train_config import TrainConfigError


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
