"""Wall-clock timing that is fair to asynchronous devices."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device = CPU) -> float:
    """One call of `fn`, finished on the device."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1, device: torch.device = CPU) -> float:
    for _ in range(warmup):
        seconds(fn, device)
    return statistics.median(seconds(fn, device) for _ in range(repeat))
