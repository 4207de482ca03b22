"""Data-parallel training with PyTorch's own engine: `torchrun --nproc_per_node=N -m capsviz train ...`.

torchrun starts N processes and sets RANK, LOCAL_RANK and WORLD_SIZE; each joins one
process group (NCCL on CUDA, gloo on CPU), trains a DistributedDataParallel copy of the
model on its shard of every epoch's shuffled data, and only rank 0 evaluates, logs and
writes checkpoints. `--batch-size` stays the global batch: each rank takes its share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from capsviz.device import resolve_device


@dataclass(frozen=True)
class Distributed:
    """This process's rank in a torchrun job, the job's size and its GPU on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def from_env() -> Distributed:
    """This process's place in a torchrun job, or SINGLE when not started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device_name: str, ddp: Distributed) -> str:
    """Join the process group; returns the device this rank trains on ("cuda:<local rank>" or "cpu")."""
    use_cuda = resolve_device(device_name).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(ddp.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return f"cuda:{ddp.local_rank}" if use_cuda else "cpu"


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class LossStep(nn.Module):
    """The model's own objective as a forward, so DistributedDataParallel sees plain tensors.

    (x (B, C, H, W), targets (B,) or (B, K), optional decoder targets) -> (loss (), scores (B, classes)
    detached); any model with `objective(x, targets, *extra) -> (loss, scores)` (see `capsviz.registry`).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self, x: torch.Tensor, targets: torch.Tensor, *extra: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss, scores = self.model.objective(x, targets, *extra)
        return loss, scores.detach()


def wrap(model: nn.Module, device: torch.device, ddp: Distributed) -> nn.Module:
    step = LossStep(model)
    if not ddp.enabled:
        return step
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=device_ids)
