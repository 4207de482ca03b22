"""The MultiMNIST pilot: one training step of the 36x36 CapsNet against one of the 28x28 MNIST CapsNet.

    nice -n 10 python -m capsviz.bench.multimnist --batch-size 128 --rounds 3 --steps 2

Both models train in this one process through `capsviz.train.TrainStep` (what `python -m capsviz
train` runs, fast path on): MNIST digits shifted by 2 px for the 28x28 model, fresh MultiMNIST
pairs (`capsviz.multimnist`) for the 36x36 one. After one warm-up step each, the rounds alternate
between them, so a machine that slows down mid-run slows both alike. Each step is timed in wall
seconds and in this process's CPU seconds: on a shared machine the wall time is what a run gets, and
CPU seconds / threads is about what a quiet machine would give. Prints JSON with the median step
times and the minutes an epoch of 60,000 images (or pairs) would take at each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

from capsviz import multimnist, tasks
from capsviz.data import Split, batches, load_mnist
from capsviz.device import device_description
from capsviz.model import CapsNet, CapsNetConfig
from capsviz.speed.fastpath import FAST
from capsviz.train import TrainConfig, TrainStep

EPOCH = 60_000


def stepper(task: str, digits: Split, batch_size: int, seed: int = 0) -> Callable[[], None]:
    """One TrainStep call per call, over endless epochs of `task`'s training data."""
    torch.manual_seed(seed)
    model = CapsNet(tasks.for_task(CapsNetConfig(), task)).train()
    step = TrainStep(model, device=torch.device("cpu"), config=TrainConfig(batch_size=batch_size, fast=FAST))
    generator = torch.Generator().manual_seed(seed)

    def epochs() -> Iterator[tuple]:
        while True:
            if task == "multimnist":
                yield from multimnist.batches(multimnist.PairSource(digits), batch_size, generator=generator)
            else:
                yield from ((i, y, None) for i, y in batches(digits, batch_size, shuffle=True, generator=generator))

    data = epochs()

    def one() -> None:
        images, labels, singles = next(data)
        step(images, labels, generator, singles)

    return one


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def pilot(digits: Split, *, batch_size: int, rounds: int, steps: int) -> dict:
    steppers = {task: stepper(task, digits, batch_size) for task in ("mnist", "multimnist")}
    for fn in steppers.values():
        timed(fn)  # warm-up: first-touch allocations
    times: dict[str, list[tuple[float, float]]] = {task: [] for task in steppers}
    for _ in range(rounds):
        for task, fn in steppers.items():
            times[task] += [timed(fn) for _ in range(steps)]
    result = {}
    for task, samples in times.items():
        wall, cpu = (statistics.median(s[i] for s in samples) for i in (0, 1))
        result[task] = {
            "input": f"{tasks.TASKS[task].input_size}x{tasks.TASKS[task].input_size}",
            "steps_timed": len(samples),
            "wall_seconds_per_step": round(wall, 3),
            "cpu_seconds_per_step": round(cpu, 3),
            "minutes_per_60000_wall": round(wall * EPOCH / batch_size / 60, 1),
            "minutes_per_60000_cpu_over_threads": round(cpu / torch.get_num_threads() * EPOCH / batch_size / 60, 1),
        }
    result["ratio_wall"] = round(
        result["multimnist"]["wall_seconds_per_step"] / result["mnist"]["wall_seconds_per_step"], 2
    )
    result["ratio_cpu"] = round(
        result["multimnist"]["cpu_seconds_per_step"] / result["mnist"]["cpu_seconds_per_step"], 2
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsviz.bench.multimnist", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per model per round")
    args = parser.parse_args(argv)
    digits = load_mnist(args.data_root, train=True)
    load_before = os.getloadavg()[0]
    with FAST.retained_memory(torch.device("cpu")):  # as `capsviz.train.train` runs its loop
        measured = pilot(digits, batch_size=args.batch_size, rounds=args.rounds, steps=args.steps)
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m capsviz.bench.multimnist " + " ".join(argv if argv is not None else sys.argv[1:]),
        "hardware": device_description(torch.device("cpu")),
        "threads": torch.get_num_threads(),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after: a busy machine
        "batch_size": args.batch_size,
        **measured,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
