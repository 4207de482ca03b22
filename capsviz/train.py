"""Training loop with callbacks, and evaluation on the MNIST (or MultiMNIST) test set.

The trainer knows nothing about its audience: the CLI plugs in a progress bar, the app
live curves and a cancel button, the tests plain lists. Every complete epoch is saved
atomically to `<out>/last.safetensors` (weights + Adam state + card) and logged to
`<out>/log.json` and `<out>/log.csv`; a cancelled or killed run keeps its last complete
epoch, and `resume=` continues it. The test set is evaluated after each epoch for the
log only: it never selects a model or stops a run.

    python -m capsviz train --epochs 10 --device auto --out runs/first
    python -m capsviz train --data multimnist --epochs 10 --out runs/multi   # two digits (capsviz.multimnist)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from capsviz import multimnist, registry, tasks
from capsviz.checkpoint import (
    CheckpointError,
    checkpoint_bytes,
    load_checkpoint,
    load_training_state,
    refuse_shipped,
    restore_optimizer,
)
from capsviz.data import MNIST_TRAIN_IMAGES, Split, batches, random_shift, to_float
from capsviz.device import device_description, resolve_device
from capsviz.files import FolderBusyError, atomic_write, clean_stale, exclusive, replace_together
from capsviz.model import CapsNetConfig
from capsviz.speed import distributed
from capsviz.speed.distributed import Distributed
from capsviz.speed.fastpath import FAST, FastPath

RUN_FILES = ("last.safetensors", "log.json", "log.csv")  # what a run folder holds, written together
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = MNIST_TRAIN_IMAGES  # a larger batch cannot be filled
MAX_SEED = 2**32 - 1  # the per-epoch generators' seeds (seed * 100_003 + ...) stay within 64 bits


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    lr_decay: float = 0.96  # exponential decay of the learning rate, per epoch ("exp" schedule)
    lr_schedule: str = "exp"  # "exp": lr * lr_decay^(epoch-1); "cosine": lr down to lr_min at the last epoch
    lr_min: float = 0.0
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 500
    eval_limit: int = 0  # evaluate on the first N test images only (a lesson's quick run); 0: all of them
    fast: FastPath = FAST  # capsviz.speed.fastpath; PLAIN for the straightforward path
    report_every: int = 0  # batches per BatchEnd callback (and GPU sync); 0: 1 on the CPU, 25 on CUDA

    def __post_init__(self) -> None:
        """Refuse a run that cannot be meant before any work: each problem in one clear sentence."""
        for name, high in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH_SIZE), ("eval_batch_size", None)):
            value = getattr(self, name)
            if type(value) is not int or value < 1 or (high is not None and value > high):
                most = f" of at most {high:,}" if high is not None else ""
                raise ValueError(f"{name} must be a positive integer{most}, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a positive number, got {self.lr!r}")
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(f"the learning-rate decay must be in (0, 1], got {self.lr_decay!r}")
        if self.lr_schedule not in ("exp", "cosine"):
            raise ValueError(f"lr_schedule must be 'exp' or 'cosine', got {self.lr_schedule!r}")
        if not (math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            raise ValueError(f"the minimum learning rate must be in [0, lr={self.lr}], got {self.lr_min!r}")
        if type(self.seed) is not int or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.report_every < 0 or self.eval_limit < 0:
            raise ValueError("report_every and eval_limit must not be negative")


@dataclass
class BatchEnd:
    epoch: int  # 1-based
    batch: int  # 1-based within the epoch: batches done so far
    num_batches: int
    loss: float  # mean over the batches since the last report
    accuracy: float  # on those (shifted) training batches
    images_per_s: float


@dataclass
class EpochEnd:
    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    lr: float
    seconds: float
    checkpoint: str


@dataclass
class TrainResult:
    status: str  # "finished" or "cancelled"
    history: list[EpochEnd] = field(default_factory=list)
    checkpoint: Path | None = None
    model: nn.Module | None = None


class Callback:
    """Override what you need; `train` calls these on its own thread. To cancel a run, set
    the `stop` event passed to `train` (from a callback or from another thread)."""

    def on_batch_end(self, info: BatchEnd) -> None:
        pass

    def on_epoch_end(self, info: EpochEnd) -> None:
        pass

    def on_eval_batch(self, done: int, total: int) -> None:
        """`done` of `total` test images evaluated after an epoch."""


class RunFolderError(ValueError):
    """The run folder cannot be written; found before any training."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: the run stops and its last good checkpoint is kept."""


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of 1-based `epoch`: the whole schedule is known before training starts."""
    if config.lr_schedule == "cosine":
        progress = (epoch - 1) / max(config.epochs - 1, 1)
        return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))
    return config.lr * config.lr_decay ** (epoch - 1)


class TrainStep:
    """One optimisation step on uint8 images: shift on the device, forward + loss, backward, Adam.

    The same object serves `train`, its tests and the benchmark, so what is timed is what runs.
    Returns (loss, number correct) as device tensors: reading them is the caller's sync point.
    """

    def __init__(
        self, model: nn.Module, *, device: torch.device, config: TrainConfig, ddp: Distributed = distributed.SINGLE
    ):
        self.fast, self.device = config.fast, device
        self.fast.prepare(model, device)
        self.optimizer = self.fast.optimizer(model.parameters(), config.lr)
        self.loss_fn = distributed.wrap(model, device, ddp)  # (x, labels) -> (loss, scores): model.objective
        if self.fast.compile:
            self.loss_fn = torch.compile(self.loss_fn)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        singles: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single digits (b, 28, 28) are shifted here; two-digit images (b, S, S) come shifted by
        `capsviz.multimnist`, with labels (b, K) and each digit alone, `singles` (b, K, S, S)."""
        if singles is None:
            images = random_shift(images, generator=generator)  # the paper's 2-px MNIST augmentation
        x = self.fast.input(to_float(images))  # (b, 1, S, S)
        extra = () if singles is None else (singles.unsqueeze(2).float().div_(255.0),)  # (b, K, 1, S, S)
        with self.fast.precision(self.device):
            with self.fast.autocast(self.device):
                loss, scores = self.loss_fn(x, labels, *extra)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # DDP averages the gradients across ranks
            self.optimizer.step()
        return loss.detach(), tasks.count_correct(scores, labels)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 500,
    stop: threading.Event | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    **options,
) -> tuple[float, int]:
    """Accuracy of `model` on an unshifted split, in eval mode; returns (accuracy, n images evaluated).
    On two-digit pairs (`capsviz.multimnist.Pairs`) an image is right when both its digits are.

    `options` go to `model.scores` (a CapsNet takes `routing_iters`). `stop` is checked between
    batches: a stopped evaluation returns the accuracy on the n < len(split) images it saw.
    `on_batch(done, total)` reports progress.
    """
    device = next(model.parameters()).device
    correct = seen = 0
    with registry.evaluating(model):
        for images, labels in batches(split, batch_size, shuffle=False):
            if stop is not None and stop.is_set():
                break
            x = to_float(images.to(device))
            correct += tasks.count_correct(model.scores(x, **options).cpu(), labels.cpu()).item()
            seen += labels.shape[0]
            if on_batch is not None:
                on_batch(seen, len(split))
    return correct / max(seen, 1), seen


def train(
    train_split: Split,
    test_split: Split,
    out_dir: str | Path,
    config: TrainConfig,
    *,
    model_config=None,
    callbacks: Iterable[Callback] = (),
    stop: threading.Event | None = None,
    resume: str | Path | None = None,
    init: str | Path | None = None,
    ddp: Distributed = distributed.SINGLE,
) -> TrainResult:
    """Train the model `model_config` describes (any kind in `capsviz.registry`; a CapsNet by
    default), or the checkpoint's model with `resume` / `init`; returns when the last epoch is
    done or `stop` is set.

    Under torchrun (`ddp` from `capsviz.speed.distributed`), every rank trains on its shard of
    each epoch and only rank 0 evaluates, calls the callbacks and writes files; `stop` is
    for single-process runs (the app). On the CPU, freed memory is kept for reuse while it
    runs (`capsviz.speed.memory`).
    """
    device = resolve_device(config.device)
    with _run_folder(Path(out_dir), ddp, resume), config.fast.retained_memory(device):
        return _train(
            train_split,
            test_split,
            Path(out_dir),
            config,
            device=device,
            model_config=model_config,
            callbacks=callbacks,
            stop=stop,
            resume=resume,
            init=init,
            ddp=ddp,
        )


def _train(
    train_split: Split,
    test_split: Split,
    out_dir: Path,
    config: TrainConfig,
    *,
    device: torch.device,
    model_config,
    callbacks: Iterable[Callback],
    stop: threading.Event | None,
    resume: str | Path | None,
    init: str | Path | None,
    ddp: Distributed,
) -> TrainResult:
    """The loop, in the shape of pytorch/examples: build or resume, then each epoch train and finish."""
    model, history, step, start_epoch = _build_or_resume(config, device, model_config, resume, init, ddp, out_dir)
    check_task(model, train_split)
    if config.eval_limit:
        test_split = test_split.head(config.eval_limit)
    train_split, test_split = train_split.to(device), test_split.to(device)
    callbacks = list(callbacks) if ddp.is_main else []
    run = _Run(model, out_dir / "last.safetensors", config, device, ddp, callbacks, stop)
    result = TrainResult("finished", history, None, model)  # .checkpoint is set once an epoch is written
    for epoch in range(start_epoch + 1, config.epochs + 1):
        trained = train_epoch(run, step, train_split, epoch)
        if trained is None:
            result.status = "cancelled"
            return result
        if not ddp.is_main:
            ddp.barrier()  # rank 0 evaluates and writes; the others wait for it
            continue
        if not finish_epoch(run, step, test_split, len(train_split), epoch, trained, history):
            result.status = "cancelled"  # stopped while evaluating: this epoch is not saved
            return result
        result.checkpoint = run.checkpoint
        ddp.barrier()
    return result


@dataclass
class _Run:
    """What every epoch of one run shares."""

    model: nn.Module
    checkpoint: Path
    config: TrainConfig
    device: torch.device
    ddp: Distributed
    callbacks: list[Callback]
    stop: threading.Event | None


def _build_or_resume(config: TrainConfig, device, model_config, resume, init, ddp: Distributed, out_dir: Path):
    """(model, the epochs already trained, the training step, the last epoch done): a new model, a run resumed
    with its Adam state, or a checkpoint's weights with a fresh optimizer (`init`)."""
    history, start_epoch = [], 0
    if resume:
        model, card, state = load_training_state(resume, device)
        history, start_epoch = _history(card, resume), state.epoch
        if history and ddp.is_main and _same_file(resume, out_dir / "last.safetensors"):
            _write_logs(out_dir, history)  # the run's logs, rebuilt from its card (a kill may have lost them)
    elif init:  # weights from a checkpoint, a fresh optimizer: epoch 1 of a new schedule
        model, _ = load_checkpoint(init, device)
    else:
        with torch.random.fork_rng(devices=[]):  # seeded init without reseeding other threads' RNG
            torch.manual_seed(config.seed)
            model = registry.build(model_config or CapsNetConfig()).to(device)
    model.train()
    step = TrainStep(model, device=device, config=config, ddp=ddp)
    if resume:
        restore_optimizer(step.optimizer, model, {k: v.to(device) for k, v in state.optimizer.items()})
    return model, history, step, start_epoch


def train_epoch(run: _Run, step: TrainStep, train_split, epoch: int) -> tuple[float, float, float] | None:
    """One epoch of training -> (mean loss, accuracy, seconds so far), or None when `stop` was set.
    Reports every `report_every` batches (the only host syncs)."""
    config, device, ddp = run.config, run.device, run.ddp
    epoch_start = time.perf_counter()
    lr = lr_at(config, epoch)
    step.set_lr(lr)
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # same order on every rank
    shift_generator = (
        generator
        if not ddp.enabled
        else torch.Generator().manual_seed(config.seed * 100_003 + epoch + 7_919 * ddp.rank)
    )
    run.model.train()
    batch_size = max(1, config.batch_size // ddp.world_size)  # --batch-size is the global batch
    shard_size = len(train_split) // ddp.world_size if ddp.enabled else len(train_split)
    num_batches = -(-shard_size // batch_size)
    report_every = config.report_every or (25 if device.type == "cuda" else 1)
    total_loss = total_correct = window_loss = window_correct = torch.zeros((), device=device)
    seen = window_seen = 0
    window_start = time.perf_counter()
    batches = _epoch_batches(train_split, batch_size, generator, (ddp.rank, ddp.world_size))
    for index, (images, labels, singles) in enumerate(batches, start=1):
        if run.stop is not None and run.stop.is_set():
            return None
        loss, correct = step(images, labels, shift_generator, singles)
        n = labels.shape[0]
        window_loss, window_correct, window_seen = window_loss + loss * n, window_correct + correct, window_seen + n
        if index % report_every and index != num_batches:
            continue  # no host sync between reports
        total_loss, total_correct, seen = total_loss + window_loss, total_correct + window_correct, seen + window_seen
        _check_finite(window_loss.item(), epoch, index, run.checkpoint)
        speed = window_seen / max(time.perf_counter() - window_start, 1e-9)
        info = BatchEnd(epoch, index, num_batches, window_loss.item() / window_seen,
                        window_correct.item() / window_seen, speed)  # fmt: skip
        for callback in run.callbacks:
            callback.on_batch_end(info)
        window_loss = window_correct = torch.zeros((), device=device)
        window_seen, window_start = 0, time.perf_counter()
    _check_finite(total_loss.item() / seen, epoch, num_batches, run.checkpoint)
    return total_loss.item() / seen, total_correct.item() / seen, time.perf_counter() - epoch_start


def finish_epoch(run: _Run, step: TrainStep, test_split, n_train: int, epoch: int, trained, history: list) -> bool:
    """Evaluate, then write the checkpoint and its logs together and tell the callbacks; False when `stop` cut
    the evaluation (nothing is written)."""
    config, model = run.config, run.model
    train_loss, train_accuracy, seconds = trained
    evaluation_start = time.perf_counter()
    test_accuracy, evaluated = evaluate(
        model,
        test_split,
        batch_size=config.eval_batch_size,
        stop=run.stop,
        on_batch=lambda done, total: [c.on_eval_batch(done, total) for c in run.callbacks],
    )
    if evaluated < len(test_split):
        return False
    seconds += time.perf_counter() - evaluation_start
    info = EpochEnd(epoch, config.epochs, train_loss, train_accuracy, test_accuracy, lr_at(config, epoch), seconds,
                    str(run.checkpoint))  # fmt: skip
    history.append(info)
    card = _card(config, model, run.device, history, n_train, len(test_split))
    card["processes"] = run.ddp.world_size
    files = {run.checkpoint: checkpoint_bytes(model, card, optimizer=step.optimizer, name=str(run.checkpoint))}
    replace_together({**files, **_logs(run.checkpoint.parent, history)})  # a checkpoint never without its logs
    for callback in run.callbacks:
        callback.on_epoch_end(info)
    return True


@contextlib.contextmanager
def _run_folder(out_dir: Path, ddp: Distributed, resume) -> Iterator[None]:
    """The run folder, held by this run alone (rank 0's lock) and cleared of killed writes' temporaries."""
    if not ddp.is_main:
        yield
        return
    check_run_folder(out_dir)
    try:
        with exclusive(out_dir, "--out"):
            clean_stale(out_dir, RUN_FILES)
            check_no_other_run(out_dir, resume)  # under the lock: a run that finished meanwhile is seen
            yield
    except FolderBusyError as exc:
        raise RunFolderError(str(exc)) from None


def clean_run_folders(root: Path) -> None:
    """Every run folder under `root` loses what killed writes left (a server's runs are never written again)."""
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.is_dir():
            clean_stale(folder, RUN_FILES)


def check_no_other_run(out_dir: Path, resume) -> None:
    """A folder holds one run: a new run never replaces it, only `resume` of its own checkpoint continues it."""
    last = out_dir / "last.safetensors"
    if last.exists() and not (resume and _same_file(resume, last)):
        raise RunFolderError(
            f"--out {out_dir} already holds a run: continue it with --resume {last}, or pick another --out"
        )


def _same_file(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _epoch_batches(split, batch_size: int, generator: torch.Generator, shard: tuple[int, int]):
    """(images, labels, singles) for one epoch: MNIST in a shuffled order (singles None), or fresh
    MultiMNIST pairs drawn from `generator` (a `capsviz.multimnist.PairSource`)."""
    if isinstance(split, multimnist.PairSource):
        yield from multimnist.batches(split, batch_size, generator=generator, shard=shard)
        return
    for images, labels in batches(split, batch_size, shuffle=True, generator=generator, shard=shard):
        yield images, labels, None


def data_task(split) -> str:
    """The task a training set or test set serves: MultiMNIST pairs or MNIST digits."""
    return "multimnist" if isinstance(split, (multimnist.PairSource, multimnist.Pairs)) else "mnist"


def check_task(model: nn.Module, split) -> None:
    """Refuse to train a model on data of another task (its input size and targets would not fit)."""
    if model.config.task != data_task(split):
        raise ValueError(f"this {model.config.task} model cannot be trained on {data_task(split)} data")


def check_run_folder(out_dir: Path) -> None:
    """Create the run folder and prove it writable now, not after the first epoch's work."""
    refuse_shipped(out_dir, "a training run")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"--out {out_dir} is an existing file, not a folder; pick a folder name")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test.", suffix=".tmp")
        probe.close()
    except OSError as exc:
        raise RunFolderError(f"cannot write the run folder {out_dir} ({exc.strerror}); pick another --out") from None


def _check_finite(loss: float, epoch: int, batch: int, checkpoint: Path) -> None:
    if not math.isfinite(loss):
        kept = f"{checkpoint} still holds the last complete epoch" if checkpoint.exists() else "nothing was saved"
        raise NonFiniteLossError(
            f"training stopped: the loss became {loss} in epoch {epoch} (by batch {batch}); {kept}. "
            "Lower the learning rate, or check the resumed checkpoint."
        )


def resumed_settings(card: dict, source) -> dict:
    """The batch size, seed and number of training images a resumed card records (those it has), checked with
    the bounds of a new run; a CheckpointError names the field otherwise. Its history is checked too."""
    _history(card, source)
    bounds = {"batch_size": (1, MAX_BATCH_SIZE), "seed": (0, MAX_SEED), "train_images": (1, MNIST_TRAIN_IMAGES)}
    settings = {}
    for key, (low, high) in bounds.items():
        value = card.get(key)
        if value is not None and (type(value) is not int or not low <= value <= high):
            raise CheckpointError(
                f"{source} has an unreadable card: '{key}' is {str(value)[:40]!r}, not an integer from {low} to {high}"
            )
        if value is not None:
            settings[key] = value
    return settings


def _history(card: dict, source) -> list[EpochEnd]:
    """The per-epoch history of a resumed card, or a CheckpointError saying what is malformed."""
    rows = card.get("history", [])
    names = {f.name for f in fields(EpochEnd)}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(r) == names and _epoch_row(r) for r in rows):
        raise CheckpointError(f"{source} has an unreadable card: its 'history' is not a list of epoch records")
    if len(rows) != card.get("epochs", 0):
        epochs = card.get("epochs")
        raise CheckpointError(f"{source} has an unreadable card: {len(rows)} history rows for {epochs} epochs")
    return [EpochEnd(**r) for r in rows]


def _epoch_row(row: dict) -> bool:
    """Whether a history row holds what `EpochEnd` says: finite numbers, whole epochs, the checkpoint's name."""
    numbers = [v for k, v in row.items() if k != "checkpoint"]
    whole = type(row["epoch"]) is int and type(row["epochs"]) is int
    return whole and isinstance(row["checkpoint"], str) and all(_finite(v) for v in numbers)


def _finite(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _card(
    config: TrainConfig,
    model: nn.Module,
    device: torch.device,
    history: list[EpochEnd],
    n_train: int,
    n_test: int,
) -> dict:
    last = history[-1]
    return {
        "kind": registry.kind_of(model),
        "model_config": model.config.to_dict(),
        "epochs": last.epoch,
        "test_accuracy": last.test_accuracy,
        "test_images": n_test,
        "train_images": n_train,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "lr_decay_per_epoch": config.lr_decay,
        "lr_min": config.lr_min,
        "task": model.config.task,
        "augmentation": tasks.TASKS[model.config.task].augmentation,
        "fast_path": config.fast.describe(device),
        "device": device_description(device),
        "wall_seconds": round(sum(h.seconds for h in history), 1),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "history": [asdict(h) for h in history],
    }


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: a string that would start a formula gets a leading quote."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def _logs(out_dir: Path, history: list[EpochEnd]) -> dict[Path, bytes]:
    """log.json and log.csv of `history` (the checkpoint column comes from --out or a resumed card: text only)."""
    rows = [asdict(h) for h in history]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    return {out_dir / "log.json": json.dumps(rows, indent=2).encode(), out_dir / "log.csv": text.getvalue().encode()}


def _write_logs(out_dir: Path, history: list[EpochEnd]) -> None:
    for path, data in _logs(out_dir, history).items():
        atomic_write(path, data)
