"""Training throughput: capsviz's step (the fast path, and optionally the plain one) against the
reference, in the same process, on the same device, at the same batch size.

Each method runs `steps` timed steps per round after its warm-up, and the rounds alternate
between methods, so a machine that slows down mid-run slows every method alike. A method's
figure is the median step time over all its rounds. An epoch is timed in full with
`epoch=True` (the GPU case); otherwise it is 60,000 images / throughput, marked estimated.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from capsviz.bench.reference import ReferenceTrainer
from capsviz.bench.timing import seconds, synchronize
from capsviz.data import Split, batches
from capsviz.fastpath import FAST, PLAIN, FastPath
from capsviz.model import CapsNet
from capsviz.train import TrainConfig, TrainStep

EPOCH_IMAGES = 60_000


class CapsvizTrainer:
    """`TrainStep` (what `python -m capsviz train` runs) over MNIST kept on the device."""

    def __init__(self, split: Split, *, batch_size: int, device: torch.device, fast: FastPath, seed: int = 0):
        torch.manual_seed(seed)
        self.model = CapsNet().to(device).train()
        self.step_fn = TrainStep(self.model, device=device, config=TrainConfig(batch_size=batch_size, fast=fast))
        self.split, self.batch_size = split.to(device), batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.batches = iter(())

    def step(self) -> torch.Tensor:
        try:
            images, labels = next(self.batches)
        except StopIteration:
            self.batches = batches(self.split, self.batch_size, shuffle=True, generator=self.generator)
            images, labels = next(self.batches)
        return self.step_fn(images, labels, self.generator)[0]

    def epoch_seconds(self, device: torch.device) -> float:
        """One full pass over the training split (no evaluation), finished on the device."""
        synchronize(device)
        start = time.perf_counter()
        for images, labels in batches(self.split, self.batch_size, shuffle=True, generator=self.generator):
            self.step_fn(images, labels, self.generator)
        synchronize(device)
        return time.perf_counter() - start


def training_throughput(
    train_split: Split,
    data_root,
    device: torch.device,
    *,
    batch_size: int = 128,
    steps: int = 3,
    rounds: int = 3,
    warmup: int = 2,
    plain: bool = False,
    compile: bool = False,
    reference: bool = True,
    epoch: bool = False,
) -> dict:
    """Images per second of each method, and its ratio to the reference.

    Methods: capsviz (the default fast path); with plain=True capsviz --plain; with
    compile=True capsviz --compile; the reference, and on CUDA also the reference fed from
    the device (its model alone, without the DataLoader).
    """
    common = {"batch_size": batch_size, "device": device}
    methods = {"capsviz": CapsvizTrainer(train_split, fast=FAST, **common)}
    if plain:
        methods["capsviz (plain path)"] = CapsvizTrainer(train_split, fast=PLAIN, **common)
    if compile:
        methods["capsviz (torch.compile)"] = CapsvizTrainer(
            train_split, fast=dataclasses.replace(FAST, compile=True), **common
        )
    if reference:
        methods["reference"] = ReferenceTrainer(data_root, **common)
        if device.type == "cuda":
            methods["reference (model only)"] = ReferenceTrainer(data_root, model_only=True, **common)
    compile_seconds = {}
    for name, trainer in methods.items():
        first = seconds(trainer.step, device)  # includes torch.compile's compile, when on
        if "compile" in name:
            compile_seconds[name] = first
        for _ in range(warmup - 1):
            seconds(trainer.step, device)
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, trainer in methods.items():
            times[name] += [seconds(trainer.step, device) for _ in range(steps)]
    results = {}
    for name, samples in times.items():
        step_s = statistics.median(samples)
        results[name] = {
            "step_seconds": step_s,
            "step_seconds_all": samples,
            "images_per_s": batch_size / step_s,
            "epoch_seconds": EPOCH_IMAGES / (batch_size / step_s),
            "epoch_measured": False,
        }
    if epoch:
        measured = methods["capsviz"].epoch_seconds(device)
        results["capsviz"].update(epoch_seconds=measured, epoch_measured=True)
    if reference:
        for name in methods:
            results[name]["vs_reference"] = results[name]["images_per_s"] / results["reference"]["images_per_s"]
    return {
        "batch_size": batch_size,
        "steps_per_round": steps,
        "rounds": rounds,
        "compile_seconds": compile_seconds,
        "fast_path": FAST.describe(device),
        "methods": results,
    }
