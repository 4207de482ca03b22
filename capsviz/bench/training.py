"""Training throughput: capsviz's step (the fast path, and optionally the plain one) against the
reference, in the same run, on the same device, at the same batch size.

Each method runs in its own worker process, as it would run alone: nothing one method does
to the process (malloc's settings, the heap it leaves, torch.compile's caches) reaches
another. The workers start and warm up one at a time; then each runs `steps` timed steps
per round while the others wait, and the rounds alternate between methods, so a machine
that slows down mid-run slows every method alike. A method's figure is the median step
time over all its rounds. An epoch is timed in full with `epoch=True` (the GPU case);
otherwise it is 60,000 images / throughput, marked estimated.

On the CPU the reference runs twice: as a plain script runs (glibc's defaults), which is
the reference the ratio is taken against, and with the freed memory kept as capsviz's fast
path keeps it (`capsviz.speed.memory`), to show how much of the ratio that setting alone gives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from capsviz.bench.reference import ReferenceTrainer
from capsviz.bench.timing import seconds, synchronize
from capsviz.data import Split, batches, load_mnist
from capsviz.model import CapsNet
from capsviz.speed import memory
from capsviz.speed.fastpath import FAST, PLAIN, FastPath
from capsviz.train import TrainConfig, TrainStep

EPOCH_IMAGES = 60_000
REFERENCE = "reference"
REFERENCE_KEPT = "reference (freed memory kept)"


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


@dataclass(frozen=True)
class Method:
    """What one worker process trains: capsviz on a FastPath, or the reference."""

    fast: FastPath | None = None  # None: the reference
    model_only: bool = False  # reference: one fixed batch on the device, no DataLoader
    retain_memory: bool = False  # reference: keep freed memory as capsviz's CPU path does

    def build(self, root: str, batch_size: int, device: torch.device, stack: contextlib.ExitStack):
        """The trainer, and whether freed memory is kept in this process."""
        if self.fast is None:
            kept = stack.enter_context(memory.retained_memory()) if self.retain_memory else False
            return ReferenceTrainer(root, batch_size=batch_size, device=device, model_only=self.model_only), kept
        kept = stack.enter_context(self.fast.retained_memory(device))  # as `train` does around its loop
        split = load_mnist(root, train=True)
        return CapsvizTrainer(split, batch_size=batch_size, device=device, fast=self.fast), kept


def _serve(conn, method: Method, root: str, device_name: str, batch_size: int, warmup: int, threads: int) -> None:
    """A worker: build the trainer, warm up, report the first step's time, then time steps on request."""
    try:
        torch.set_num_threads(threads)
        device = torch.device(device_name)
        with contextlib.ExitStack() as stack:
            trainer, kept = method.build(root, batch_size, device, stack)
            first = seconds(trainer.step, device)  # includes torch.compile's compile, when on
            for _ in range(warmup - 1):
                seconds(trainer.step, device)
            conn.send(("ok", {"first_step_seconds": first, "freed_memory_kept": kept}))
            while True:
                command, count = conn.recv()
                if command == "steps":
                    conn.send(("ok", [seconds(trainer.step, device) for _ in range(count)]))
                elif command == "epoch":
                    conn.send(("ok", trainer.epoch_seconds(device)))
                else:
                    return
    except (KeyboardInterrupt, EOFError):  # Ctrl-C reaches every worker; a gone parent closes the pipe
        return
    except Exception as exc:  # reported by the parent with the method's name
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


class BenchWorkerError(RuntimeError):
    """A method's worker process failed or died."""


class Worker:
    """A fresh `python` process training one method, driven over a pipe (POSIX only).

    A subprocess rather than multiprocessing's spawn, which would re-run the parent's
    __main__ (under pytest after an AppTest, that is app.py).
    """

    REPLY_TIMEOUT_S = 3600  # a warm-up with torch.compile, or a CPU epoch, is long; a hang is longer

    def __init__(self, name: str, method: Method, root, device: torch.device, batch_size: int, warmup: int):
        if os.name != "posix":
            raise BenchWorkerError("the training benchmark hands its workers a pipe, which needs Linux or macOS")
        self.name = name
        self.conn, child = multiprocessing.Pipe()
        paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]  # this capsviz first
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        code = f"from capsviz.bench.training import _worker_main; _worker_main({child.fileno()})"
        self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=[child.fileno()], env=env)
        child.close()
        try:
            self.conn.send((method, str(root), str(device), batch_size, warmup, torch.get_num_threads()))
        except OSError:
            self.close()
            raise

    def ask(self, command: str, count: int = 0):
        """Send a command ("steps" with a count, or "epoch") and wait for its result."""
        with contextlib.suppress(OSError):  # a worker that died: receive() says how it ended
            self.conn.send((command, count))
        return self.receive()

    def receive(self):
        """The worker's next reply: its warm-up report first, then each command's result."""
        if not self.conn.poll(self.REPLY_TIMEOUT_S):
            raise BenchWorkerError(f"the '{self.name}' worker sent nothing for {self.REPLY_TIMEOUT_S} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):  # the pipe closed, or was reset, with the process
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
            code = self.process.poll()
            raise BenchWorkerError(f"the '{self.name}' worker exited (code {code}); out of memory?") from None
        if status != "ok":
            raise BenchWorkerError(f"the '{self.name}' worker failed: {value}")
        return value

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.conn.send(("stop", 0))
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=30)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.conn.close()


def _worker_main(fd: int) -> None:
    """Entry point of a Worker's process: its settings, then `_serve` until told to stop."""
    conn = Connection(fd)
    _serve(conn, *conn.recv())


def methods_to_time(device: torch.device, *, plain: bool, compile: bool, reference: bool) -> dict[str, Method]:
    """capsviz, and on request its plain and compiled paths; the reference, and on CUDA also
    the reference fed from the device (its model alone, without the DataLoader); on the CPU
    with glibc also the reference with freed memory kept."""
    methods = {"capsviz": Method(FAST)}
    if plain:
        methods["capsviz (plain path)"] = Method(PLAIN)
    if compile:
        methods["capsviz (torch.compile)"] = Method(dataclasses.replace(FAST, compile=True))
    if reference:
        methods[REFERENCE] = Method()
        if device.type == "cuda":
            methods["reference (model only)"] = Method(model_only=True)
        if device.type == "cpu" and memory.supported():
            methods[REFERENCE_KEPT] = Method(retain_memory=True)
    return methods


def training_throughput(
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
    """Images per second of each method, and its ratio to the reference."""
    methods = methods_to_time(device, plain=plain, compile=compile, reference=reference)
    workers, ready = {}, {}
    try:
        for name, method in methods.items():  # one at a time: warm-ups do not compete
            workers[name] = Worker(name, method, data_root, device, batch_size, max(warmup, 1))
            ready[name] = workers[name].receive()
        times = {name: [] for name in methods}
        for _ in range(rounds):
            for name, worker in workers.items():
                times[name] += worker.ask("steps", steps)
        measured_epoch = workers["capsviz"].ask("epoch") if epoch else None
    finally:
        for worker in workers.values():
            worker.close()
    results = {}
    for name, samples in times.items():
        step_s = statistics.median(samples)
        results[name] = {
            "step_seconds": step_s,
            "step_seconds_all": samples,
            "images_per_s": batch_size / step_s,
            "epoch_seconds": EPOCH_IMAGES / (batch_size / step_s),
            "epoch_measured": False,
            "freed_memory_kept": ready[name]["freed_memory_kept"],
        }
    if measured_epoch is not None:
        results["capsviz"].update(epoch_seconds=measured_epoch, epoch_measured=True)
    if reference:
        for name in methods:
            results[name]["vs_reference"] = results[name]["images_per_s"] / results[REFERENCE]["images_per_s"]
    return {
        "batch_size": batch_size,
        "steps_per_round": steps,
        "rounds": rounds,
        "processes": "one per method",
        "compile_seconds": {name: r["first_step_seconds"] for name, r in ready.items() if "compile" in name},
        "fast_path": FAST.describe(device),
        "methods": results,
    }
