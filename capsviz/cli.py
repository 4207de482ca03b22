"""The `capsviz` (or `python -m capsviz`) command line: train, evaluate, predict, export, app.

python -m capsviz train --epochs 10 --batch-size 128 --device auto --out runs/first
python -m capsviz train --data multimnist --out runs/multi   # two overlapping digits (capsviz.multimnist)
python -m capsviz evaluate --json                    # the shipped checkpoint on MNIST test
python -m capsviz predict digit.png other.jpg --json
python -m capsviz trace digit.png --out digit-trace.safetensors   # the full routing trace of one image
python -m capsviz routing-accuracy                  # test accuracy after 1..5 iterations -> JSON
python -m capsviz robustness --json                 # MNIST test, an affNIST-like set and affine sweeps
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import torch

from capsviz import multimnist, registry, tasks
from capsviz.checkpoint import (
    PRETRAINED_DIR,
    SHIPPED_CHECKPOINT,
    CheckpointError,
    among_shipped,
    bounded_parameters,
    load_checkpoint,
    read_card,
    read_config,
    refuse_shipped,
)
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import DataUnavailableError, default_data_root, load_mnist
from capsviz.device import DEVICE_CHOICES, DeviceUnavailableError
from capsviz.files import atomic_write, clean_stale, read_capped, replace_together
from capsviz.train import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_SEED,
    BatchEnd,
    Callback,
    EpochEnd,
    NonFiniteLossError,
    RunFolderError,
    TrainConfig,
    check_no_other_run,
    check_run_folder,
    resumed_settings,
)

TRAIN_DEFAULTS = TrainConfig()  # the command line's defaults are the trainer's own

ITERATIONS = range(1, MAX_ROUTING_ITERS + 1)


class UsageError(ValueError):
    """Options that do not go together; printed as an error, exit status 2."""


def _number(kind, *, low: float, low_open: bool = False, high: float | None = None):
    """An argparse type: a finite `kind` >= low (> low when low_open), <= high; one clear message otherwise."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        too_low = value < low or (low_open and value == low)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {bound}")
        return value

    return parse


POSITIVE_INT = _number(int, low=1)
NON_NEGATIVE_INT = _number(int, low=0)
EPOCHS = _number(int, low=1, high=MAX_EPOCHS)
BATCH_SIZE = _number(int, low=1, high=MAX_BATCH_SIZE)
SEED = _number(int, low=0, high=MAX_SEED)
POSITIVE = _number(float, low=0, low_open=True)
NON_NEGATIVE = _number(float, low=0)
DECAY = _number(float, low=0, low_open=True, high=1)
THREADS = _number(int, low=1, high=4 * (os.cpu_count() or 1))  # far more threads than cores crashed OpenMP


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["app"] and argv[1:2] not in (["-h"], ["--help"]):
        return _app(argv[1:])  # every other argument is streamlit's
    args = parser.parse_args(argv)
    if args.command == "train":
        _check_train_args(parser, args)
    try:
        commands_by_name = {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "export": _export,
            "trace": _trace,
            "routing-accuracy": _routing_accuracy,
            "robustness": _robustness,
            "multimnist-claims": _multimnist_claims,
        }
        return commands_by_name[args.command](args)
    except (DataUnavailableError, CheckpointError, DeviceUnavailableError, UsageError, RunFolderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output that cannot be written: said plainly, not as a traceback
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; the last complete epoch's checkpoint is kept", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """`capsviz COMMAND`: each command's options, the shared ones (--data-root, --checkpoint) declared once."""
    parser = argparse.ArgumentParser(prog="capsviz", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data = argparse.ArgumentParser(add_help=False)  # options several commands share, declared once
    data.add_argument(
        "--data-root", default=None, help="the folder holding MNIST/ (default $CAPSVIZ_DATA, else ~/.cache/capsviz)"
    )
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT), help="default: the shipped CapsNet")
    _add_train(commands, data)
    _add_reading(commands, model, data)
    _add_export(commands, data)
    _add_measuring(commands, model, data)
    commands.add_parser("app", help="serve the app on this machine (http://localhost:8501); streamlit flags follow")
    return parser


def _add_train(commands, data) -> None:
    t = commands.add_parser(
        "train", parents=[data], help="train a model on MNIST (a CapsNet unless --model says otherwise)"
    )
    t.add_argument(
        "--data",
        choices=sorted(tasks.TASKS),
        default=None,
        help="mnist (one digit) or multimnist (two overlapping digits, 36x36); default mnist, or the checkpoint's",
    )
    t.add_argument("--model", choices=sorted(registry.MODELS), default=None, help="model kind (default capsnet)")
    t.add_argument("--preset", default=None, help="a named config of the kind (cnn: small, paper)")
    t.add_argument("--epochs", type=EPOCHS, default=TRAIN_DEFAULTS.epochs)
    t.add_argument(
        "--batch-size", type=BATCH_SIZE, default=None,
        help=f"default {TRAIN_DEFAULTS.batch_size}, or the resumed run's",
    )  # fmt: skip
    t.add_argument("--lr", type=POSITIVE, default=TRAIN_DEFAULTS.lr)
    t.add_argument(
        "--lr-decay", type=DECAY, default=TRAIN_DEFAULTS.lr_decay, help="learning-rate factor per epoch, in (0, 1]"
    )
    t.add_argument(
        "--lr-schedule", choices=["exp", "cosine"], default=TRAIN_DEFAULTS.lr_schedule,
        help="exp: lr x decay^(epoch-1)",
    )  # fmt: skip
    t.add_argument(
        "--lr-min", type=NON_NEGATIVE, default=TRAIN_DEFAULTS.lr_min, help="cosine: the last epoch's learning rate"
    )
    t.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS, help="CapsNet only (default 3)")
    t.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    t.add_argument("--out", required=True, help="run folder: last.safetensors, log.json, log.csv")
    t.add_argument("--resume", default=None, help="a run's last.safetensors to continue")
    t.add_argument("--init", default=None, help="start from a checkpoint's weights with a fresh optimizer")
    t.add_argument("--limit", type=POSITIVE_INT, default=None, help="use only the first N train and test images")
    t.add_argument("--seed", type=SEED, default=None, help="default 0, or the resumed run's")
    t.add_argument("--threads", type=THREADS, default=None, help="CPU threads for torch")
    t.add_argument("--compile", action="store_true", help="torch.compile the model and loss (slow start)")
    t.add_argument(
        "--keep-epochs",
        action="store_true",
        help="also keep each epoch's checkpoint as epoch-N.safetensors (to ship the epoch a clock stopped at)",
    )
    t.add_argument(
        "--plain",
        action="store_true",
        help="turn the fast path off: float32, NCHW, no fused Adam (capsviz.speed.fastpath)",
    )


def _add_reading(commands, model, data) -> None:
    """evaluate, predict and trace: a model reads images."""
    e = commands.add_parser(
        "evaluate", parents=[model, data], help="accuracy on the 10,000 MNIST test images (or MultiMNIST test pairs)"
    )
    e.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    e.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)
    e.add_argument("--limit", type=POSITIVE_INT, default=None)
    e.add_argument("--json", action="store_true")

    p = commands.add_parser("predict", parents=[model], help="classify image files (drawings, photos, scans)")
    p.add_argument("images", nargs="+")
    p.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)
    p.add_argument("--json", action="store_true")

    tr = commands.add_parser(
        "trace",
        parents=[model],
        help="write one image's full routing trace (safetensors; capsviz.analysis.trace_export)",
    )
    tr.add_argument("image")
    tr.add_argument("--out", required=True, help="the .safetensors file to write")
    tr.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)


def _add_export(commands, data) -> None:
    x = commands.add_parser("export", parents=[data], help="convert a run's checkpoint into a shippable model + card")
    x.add_argument("checkpoint", help="a run's last.safetensors")
    x.add_argument("--out", default=str(SHIPPED_CHECKPOINT))
    x.add_argument("--half", action="store_true", help="store weights as float16 (about 16 MB)")
    x.add_argument("--note", default="", help="free text for the card (how it was trained, on what)")
    x.add_argument(
        "--continues",
        default=None,
        help="the card (.json) of the checkpoint this run started from (--init or a resumed export): "
        "its epochs, per-epoch test accuracies and wall time are counted in",
    )


def _add_measuring(commands, model, data) -> None:
    """routing-accuracy, robustness and multimnist-claims: the measurements the docs and the app cite."""
    ra = commands.add_parser(
        "routing-accuracy", parents=[model, data], help="test accuracy after 1..5 routing iterations -> JSON"
    )
    ra.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    ra.add_argument("--limit", type=POSITIVE_INT, default=None, help="only the first N test images (the JSON says so)")
    ra.add_argument("--out", default=None, help="default: next to the checkpoint, NAME.routing.json")

    rb = commands.add_parser(
        "robustness", parents=[data], help="accuracy on MNIST test, an affNIST-like set and affine sweeps"
    )
    rb.add_argument("--checkpoint", action="append", default=[], help="a model to add to the shipped ones (repeatable)")
    rb.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    rb.add_argument(
        "--limit", type=POSITIVE_INT, default=None, help="only the first N test images (the report says so)"
    )
    rb.add_argument(
        "--sweep-limit",
        type=POSITIVE_INT,
        default=None,
        help="the sweeps read only the first N test images (MNIST and the affine set read all; the report says so)",
    )
    rb.add_argument("--seed", type=SEED, default=0, help="the affNIST-like set's seed")
    rb.add_argument("--out-dir", default=None, help="also write robustness.md, robustness.json and sweeps.png there")
    rb.add_argument("--json", action="store_true")

    mc = commands.add_parser(
        "multimnist-claims",
        parents=[data],
        help="the shipped two-digit models on the MultiMNIST test pairs, compared pair by pair",
    )
    mc.add_argument("--models", default=str(PRETRAINED_DIR), help="the folder holding the three models")
    mc.add_argument("--out", default=None, help="the JSON report (default pretrained/multimnist_claims.json)")


def _app(streamlit_args: list[str]) -> int:
    import subprocess

    from capsviz.ui.server import command

    line = command(streamlit_args)
    if os.name == "posix":
        os.execv(line[0], line)  # streamlit becomes this process: Ctrl-C and signals reach it directly
    try:
        return subprocess.call(line)
    except KeyboardInterrupt:
        return 130


def _check_train_args(parser: argparse.ArgumentParser, args) -> None:
    """What one argument cannot say alone, refused before any work (argparse exits 2)."""
    if args.lr_min > args.lr:
        parser.error(f"--lr-min {args.lr_min} is above --lr {args.lr}")
    if args.resume and args.init:
        parser.error("--resume continues a run, --init starts a new one from weights: give one of them")
    source = args.resume or args.init
    if source and (args.model or args.preset or args.routing_iters):
        parser.error(
            "--model, --preset and --routing-iters describe a new model; with --resume or --init it comes from "
            f"the checkpoint {source}, its routing iterations included"
        )
    try:
        config = read_config(source) if source else None  # a foreign or broken checkpoint is refused before any work
        card = resumed_settings(read_card(args.resume), args.resume) if args.resume else {}
    except CheckpointError as exc:
        parser.error(str(exc))
    if config is not None and args.data not in (None, config.task):
        parser.error(f"{source} holds a {config.task} model: it trains on --data {config.task}, not {args.data}")
    args.data = config.task if config is not None else args.data or tasks.DEFAULT
    _check_same_run(parser, args, card)
    try:
        args.model_config = _model_config(args)
        args.new_folders = _missing_folders(Path(args.out))  # what a refused or failed start removes again
        check_no_other_run(Path(args.out), args.resume)  # again under the run's lock (`train`)
        check_run_folder(Path(args.out))  # the run folder is made last, once every argument is accepted
    except (UsageError, CheckpointError, RunFolderError) as exc:
        parser.error(str(exc))


def _check_same_run(parser, args, card: dict) -> None:
    """A resumed run keeps its batch size, seed and training images (`resumed_settings` of its card):
    unset, they are the run's; set to another value, refused (the images once the data is read)."""
    for option, key in (("--batch-size", "batch_size"), ("--seed", "seed")):
        given, recorded = getattr(args, key), card.get(key)
        if given is not None and recorded is not None and given != recorded:
            parser.error(
                f"{args.resume} was trained with {option} {recorded}; resume it with the same value "
                f"(or start a new run from its weights with --init)"
            )
        setattr(
            args,
            key,
            given if given is not None else recorded if recorded is not None else getattr(TRAIN_DEFAULTS, key),
        )
    args.resumed_images = card.get("train_images")
    if args.limit is None:
        args.limit = args.resumed_images  # the run's own training set (and test images, as --limit cut both)


def _missing_folders(path: Path) -> list[Path]:
    """The folders of `path` that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _train(args) -> int:
    """Train, and when the run stops before its first epoch is written, remove the folders it made (left empty)."""
    try:
        return _run_training(args)
    except BaseException:
        for folder in args.new_folders:
            try:
                folder.rmdir()  # only an empty folder goes
            except OSError:
                break
        raise


def _run_training(args) -> int:
    from capsviz.speed import distributed
    from capsviz.speed.fastpath import FAST, PLAIN
    from capsviz.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    ddp = distributed.from_env()  # set by torchrun; a single process otherwise
    device = distributed.setup(args.device, ddp) if ddp.enabled else args.device
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        lr_schedule=args.lr_schedule,
        lr_min=args.lr_min,
        seed=args.seed,
        device=device,
        fast=dataclasses.replace(PLAIN if args.plain else FAST, compile=args.compile),
    )
    try:
        train_split = _digits(args.data, args.data_root, train=True, limit=args.limit)
        test_split = tasks.evaluation_set(args.data, _digits(args.data, args.data_root, train=False)).head(args.limit)
        if args.data == "multimnist":
            train_split = multimnist.PairSource(train_split)  # fresh pairs of these digits every epoch
        if args.resumed_images is not None and len(train_split) != args.resumed_images:
            raise UsageError(
                f"{args.resume} was trained on {args.resumed_images:,} images; this data root and --limit give "
                f"{len(train_split):,}"
            )
        callbacks = [_Progress()] if ddp.is_main else []
        if args.keep_epochs:
            callbacks.append(_KeepEpochs())
        result = train(
            train_split,
            test_split,
            args.out,
            config,
            model_config=args.model_config,
            callbacks=callbacks,
            resume=args.resume,
            init=args.init,
            ddp=ddp,
        )
    finally:
        distributed.shutdown()
    if not ddp.is_main:
        return 0
    if result.checkpoint is None:
        print(f"{result.status}: nothing to do (the run already has {args.epochs} epochs)")
    else:
        print(f"{result.status}: {result.checkpoint}")
    return 0


def _model_config(args):
    """The config --model, --preset, --routing-iters and --data describe, within the size a checkpoint may hold
    (`bounded_parameters`); None when the model comes from --resume / --init (with which _check_train_args has
    refused them)."""
    if args.resume or args.init:
        return None
    kind = args.model or registry.LEGACY_KIND
    config_class = registry.classes(kind)[1]
    presets = getattr(config_class, "PRESETS", {})
    if args.preset is not None and args.preset not in presets:
        named = ", ".join(sorted(presets)) or "none"
        raise UsageError(f"--preset {args.preset!r} is not a named {kind} config (named: {named})")
    base = presets[args.preset] if args.preset is not None else config_class()
    config = tasks.for_task(dataclasses.replace(base, **_routing_option(kind, args.routing_iters)), args.data)
    options = {"--model": kind, "--preset": args.preset, "--data": args.data}
    named = " ".join(f"{option} {value}" for option, value in options.items() if value is not None)
    try:
        bounded_parameters(config, named)  # the one count that checkpoint loading enforces
    except CheckpointError as exc:
        raise UsageError(f"{exc}, so its checkpoint could not be loaded: nothing was trained") from None
    return config


def _routing_option(kind: str, routing_iters: int | None) -> dict:
    """{"routing_iters": n} when given; refused for a kind without routing."""
    if routing_iters is None:
        return {}
    if not registry.has_routing(registry.classes(kind)[1]):
        raise UsageError(f"--routing-iters applies to a CapsNet; a {kind} model has no routing")
    return {"routing_iters": routing_iters}


class _KeepEpochs(Callback):
    """A copy of each epoch's checkpoint beside it, epoch-N.safetensors, written atomically."""

    def on_epoch_end(self, info: EpochEnd) -> None:
        checkpoint = Path(info.checkpoint)
        atomic_write(checkpoint.with_name(f"epoch-{info.epoch}.safetensors"), checkpoint.read_bytes())


class _Progress(Callback):
    """A tqdm bar per epoch and one summary line per epoch (rank 0 only)."""

    bar = None

    def on_batch_end(self, info: BatchEnd) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=info.num_batches, desc=f"epoch {info.epoch}", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(info.batch - self.bar.n)
        self.bar.set_postfix(loss=f"{info.loss:.4f}", acc=f"{info.accuracy:.3f}", img_s=f"{info.images_per_s:.0f}")

    def on_epoch_end(self, info: EpochEnd) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        print(
            f"epoch {info.epoch}/{info.epochs}  loss {info.train_loss:.4f}  "
            f"train acc {info.train_accuracy:.4f}  test acc {info.test_accuracy:.4f}  "
            f"lr {info.lr:.2e}  {info.seconds:.0f}s",
            flush=True,
        )


def _evaluate(args) -> int:
    from capsviz.device import resolve_device
    from capsviz.train import evaluate

    device = resolve_device(args.device)
    model, card = _load_model(args.checkpoint, device)
    split = _test_split(model, args.data_root).head(args.limit)
    kind = registry.kind_of(model)
    options = _routing_option(kind, args.routing_iters)
    accuracy, n = evaluate(model, split, **options)
    if args.json:
        report = {"accuracy": accuracy, "n": n, "errors": n - round(accuracy * n), "checkpoint": str(args.checkpoint)}
        report["kind"] = kind
        report["task"] = model.config.task
        if registry.has_routing(model):
            report["routing_iters"] = args.routing_iters or model.config.routing_iters
        print(json.dumps(report))
    else:
        examples = tasks.TASKS[model.config.task].test_set
        print(f"{args.checkpoint}: accuracy {accuracy:.4%} on {n} {examples} ({n - round(accuracy * n)} errors)")
    return 0


def _predict(args) -> int:
    """One digit per image (`label`), or for a two-digit model the two digits it names (`labels`, surest first)."""
    from capsviz.preprocess import open_image, to_mnist, to_two_digits

    model, _ = _load_model(args.checkpoint)
    kind = registry.kind_of(model)
    options = _routing_option(kind, args.routing_iters)
    digits = tasks.digits_of(model.config)
    prepare, key = (to_mnist, "label") if digits == 1 else (to_two_digits, "labels")
    results, failed = [], 0
    for path in args.images:
        entry = {"path": path}
        try:
            x = prepare(open_image(path))
        except ValueError as exc:
            entry.update({key: None, "scores": None, "error": f"cannot read image: {exc}"})
            failed += 1
            results.append(entry)
            if not args.json:
                print(f"{path}: error: cannot read image ({exc})", file=sys.stderr)
            continue
        if x is None:
            entry.update({key: None, "scores": [0.0] * model.config.num_classes, "blank": True})
        else:
            with torch.no_grad():
                scores = model.scores(x.unsqueeze(0), **options)  # (1, classes): a CapsNet's capsule lengths
            entry.update(
                {key: tasks.predict(scores, digits)[0].tolist(), "scores": [round(v, 6) for v in scores[0].tolist()]}
            )
        results.append(entry)
        if not args.json:
            named = entry[key]
            shown = "blank (draw a digit)" if named is None else " and ".join(map(str, named)) if digits > 1 else named
            print(f"{path}: {shown}")
    if args.json:
        if registry.has_routing(model):  # a CapsNet's scores are its capsule lengths, under their older key too
            results = [{**entry, "lengths": entry["scores"]} for entry in results]
        print(json.dumps(results))
    return 1 if failed == len(args.images) else 0


MAX_CARD_BYTES = 1 << 20


def read_earlier_card(path: str) -> dict:
    """The card of the checkpoint a run started from, checked: epochs, per-epoch accuracies, wall time."""
    file = Path(path)
    try:
        raw = read_capped(file, MAX_CARD_BYTES)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--continues {path}: not a card file (a .json of at most 1 MiB): {exc}") from None
    try:
        card = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UsageError(f"--continues {path}: not JSON ({exc})") from None
    per_epoch = card.get("test_accuracy_per_epoch") if isinstance(card, dict) else None
    ok = (
        isinstance(per_epoch, list)
        and all(map(_accuracy, per_epoch))
        and type(card.get("epochs")) is int
        and card["epochs"] == len(per_epoch)
        and _seconds(card.get("wall_seconds"))
    )
    if not ok:
        raise UsageError(f"--continues {path}: a card needs epochs, wall_seconds and one test accuracy per epoch")
    return card


def counted_twice(history: list, earlier: dict) -> bool:
    """Whether the earlier card is this run's own start (an export of it before it was resumed): its curve and
    wall time are those of the first epochs of this run's history."""
    k = len(earlier["test_accuracy_per_epoch"])
    rows = [h for h in history[:k] if isinstance(h, dict)]
    if k == 0 or len(rows) < k:
        return False
    try:
        same_curve = [round(h["test_accuracy"], 4) for h in rows] == earlier["test_accuracy_per_epoch"]
        seconds = sum(h["seconds"] for h in rows)
    except (KeyError, TypeError):  # not a history this trainer wrote: nothing to compare
        return False
    return same_curve and abs(seconds - earlier["wall_seconds"]) <= 0.1  # the card rounds to 0.1 s


def continued_card(card: dict, earlier: dict) -> dict:
    """This run's card counted on top of the earlier one: all epochs, the whole curve, the total wall time."""
    this_run = card.get("epochs", len(card["test_accuracy_per_epoch"]))
    return {
        **card,
        "epochs": earlier["epochs"] + this_run,
        "epochs_this_run": this_run,
        "test_accuracy_per_epoch": earlier["test_accuracy_per_epoch"] + card["test_accuracy_per_epoch"],
        "wall_seconds": round(earlier["wall_seconds"] + card.get("wall_seconds", 0.0), 1),
        "wall_seconds_this_run": card.get("wall_seconds", 0.0),
    }


def _export(args) -> int:
    """Write weights without optimizer state, measure them on MNIST test, write the card beside.

    The weights are measured from their bytes in memory; only when the measurement succeeded are
    they and the card written together (`replace_together`), so a failed export leaves the
    destination (the shipped model, by default) untouched. The card inside the weights is the one
    every capsviz reader takes; the .json beside is its copy.
    """
    from capsviz.analysis.routing_accuracy import display_path
    from capsviz.checkpoint import checkpoint_bytes
    from capsviz.train import evaluate

    model, card = _load_model(args.checkpoint)
    out = Path(args.out)
    _check_export_out(out, model)
    _clean_before_writing(out, out.with_suffix(".json"))
    card = _export_card(args, out, model, card)  # every field it reads checked, before any work
    test_split = _test_split(model, args.data_root)
    task = tasks.TASKS[model.config.task]
    shipped, _ = load_checkpoint(checkpoint_bytes(model, card, half=args.half))  # float16 -> float32 as shipped
    accuracy, n = evaluate(shipped, test_split)
    card.update(
        test_accuracy=accuracy,
        test_images=n,
        test_errors=n - round(accuracy * n),
        measured_by="python -m capsviz evaluate --checkpoint " + display_path(out),
    )
    _check_full_measurement(out, n, model.config.task)
    weights = checkpoint_bytes(shipped, card, half=args.half, name=str(out))
    replace_together({out: weights, out.with_suffix(".json"): (json.dumps(card, indent=2) + "\n").encode()})
    print(f"{out}: accuracy {accuracy:.4%} on {n} {task.test_set} (after {card['storage']} storage)")
    return 0


def _export_card(args, out: Path, model, card: dict) -> dict:
    """The exported card: the run's card without its history, named after `out`, counted on top of
    --continues's card."""
    import datetime as dt

    check_run_card(card, args.checkpoint)
    earlier = read_earlier_card(args.continues) if args.continues else None
    history = card.pop("history", [])
    per_epoch = [round(h["test_accuracy"], 4) for h in history if "test_accuracy" in h]
    identity = {
        "name": out.stem,
        "model": model.config.describe(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    card = {
        **identity,
        **card,
        **identity,  # a re-exported card's old name never wins; the keys keep their place at the top
        "storage": "float16" if args.half else "float32",
        "note": args.note,
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "selection": "final epoch; the test set was never used for selection or early stopping",
        "test_accuracy_per_epoch": per_epoch or card.get("test_accuracy_per_epoch", []),  # a re-export keeps it
    }
    if earlier is None:
        return card
    if counted_twice(history, earlier):
        raise UsageError(
            f"--continues {args.continues}: this run's own history already holds that card's "
            f"{earlier['epochs']} epoch(s) (a resumed run counts them itself); export it without --continues"
        )
    return continued_card(card, earlier)


def check_run_card(card: dict, path) -> None:
    """The fields `export` reads from a run's card (those it has), checked: a CheckpointError names the field."""
    history, per_epoch = card.get("history", []), card.get("test_accuracy_per_epoch", [])
    checks = {
        "history": isinstance(history, list)
        and all(isinstance(h, dict) and _accuracy(h.get("test_accuracy", 0)) for h in history),
        "test_accuracy_per_epoch": isinstance(per_epoch, list) and all(map(_accuracy, per_epoch)),
        "epochs": type(card.get("epochs", 0)) is int and card.get("epochs", 0) >= 0,
        "wall_seconds": _seconds(card.get("wall_seconds", 0)),
    }
    for field, ok in checks.items():
        if not ok:
            raise CheckpointError(
                f"{path} has an unreadable card: its '{field}' is {str(card[field])[:60]!r}, not what a run writes"
            )


def _accuracy(value) -> bool:
    return type(value) in (int, float) and 0 <= value <= 1


def _seconds(value) -> bool:
    return type(value) in (int, float) and 0 <= value < math.inf


def _clean_before_writing(*outputs: Path) -> None:
    """Temporaries and staging folders that killed writes left beside `outputs` go (or are finished)."""
    for out in outputs:
        if out.parent.is_dir():
            clean_stale(out.parent, (out.name,))


def _check_json_out(out: Path, own: Path) -> None:
    """A report's --out, refused before the measurement rather than after it: a .json file in a writable folder,
    among the shipped files (pretrained/) only as the command's `own` report there."""
    if out.resolve() != own.resolve():
        refuse_shipped(out, "this report")
    if out.suffix != ".json" or not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise UsageError(f"--out {out} must be a .json file in a writable folder (checked before the measurement)")


def _check_full_measurement(out: Path, n: int, task: str) -> None:
    """What lands among the shipped files (pretrained/) was measured on the task's whole test set."""
    full, examples = tasks.TASKS[task].test_size, tasks.TASKS[task].test_set.split(" (")[0]
    if n != full and among_shipped(out):
        raise UsageError(
            f"{out} is among the shipped files, which are measured on all {full:,} {examples}; this measurement has "
            f"{n:,}: nothing was written"
        )


def _check_export_out(out: Path, model) -> None:
    """Refuse, before any measurement, an --out that would replace what it should not."""
    if out.suffix != ".safetensors" or out.is_dir():
        raise UsageError(f"--out {out} must be a .safetensors file name (the card is written beside it as .json)")
    kind = registry.kind_of(model)
    if out.resolve() == SHIPPED_CHECKPOINT.resolve():
        why = registry.explorer_mismatch(model)
        if why is not None:
            raise UsageError(f"the shipped checkpoint is the explorer's CapsNet and {why}: give a {kind} its own --out")
    if out.exists():
        try:
            existing = read_config(out)
        except CheckpointError:
            raise UsageError(
                f"--out {out} exists and is not a capsviz model checkpoint: refusing to replace it"
            ) from None
        if registry.kind_of(existing) != kind:
            raise UsageError(f"--out {out} holds a {registry.kind_of(existing)} model; give a {kind} its own --out")
        if existing.task != model.config.task:
            was, now = tasks.TASKS[existing.task].title, tasks.TASKS[model.config.task].title
            raise UsageError(f"--out {out} holds a model trained on {was}; give this {now} model its own --out")


def _trace(args) -> int:
    """One image, preprocessed as `predict` does, through the model with every iteration recorded."""
    from capsviz.analysis import trace_export
    from capsviz.analysis.xray import xray
    from capsviz.preprocess import open_image, to_mnist

    model, _ = _load_mnist_model(args.checkpoint)
    _require_routing(model, args.checkpoint)
    refuse_shipped(args.out, "a trace")
    _check_trace_out(Path(args.out))
    _clean_before_writing(Path(args.out))
    try:
        x = to_mnist(open_image(args.image))
    except ValueError as exc:
        print(f"error: cannot read image {args.image}: {exc}", file=sys.stderr)
        return 1
    if x is None:
        print(f"error: {args.image} is blank: no digit to trace", file=sys.stderr)
        return 1
    ray = xray(model, x, args.routing_iters or model.config.routing_iters)
    predicted = int(ray.lengths[-1].argmax())
    out = trace_export.save(args.out, ray, predicted=predicted, checkpoint=str(args.checkpoint))
    print(f"{out}: predicted {predicted}, {ray.iterations} routing iterations ({', '.join(trace_export.KEYS)})")
    return 0


def _check_trace_out(out: Path) -> None:
    """A trace's --out: a .safetensors file name, replacing only a regular file that holds a capsviz trace."""
    from capsviz.analysis import trace_export

    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out} must be a .safetensors file name (a routing trace)")
    if out.exists() and not out.is_file():
        raise UsageError(f"--out {out} exists and is not a regular file: refusing to replace it")
    if out.exists() and not trace_export.is_trace(out):
        raise UsageError(f"--out {out} exists and is not a capsviz routing trace: refusing to replace it")


def _load_model(path, device="cpu", *, mnist_only: bool = False):
    """load_checkpoint, refusing a model that cannot read its own task's images (MNIST or MultiMNIST), or with
    `mnist_only` one that cannot read 28x28 MNIST digits."""
    model, card = load_checkpoint(path, device)
    problem = (registry.mnist_mismatch if mnist_only else tasks.mismatch)(model.config)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    return model, card


def _test_split(model, data_root):
    """The test set of the model's task: the MNIST test digits, or the fixed MultiMNIST test pairs of them."""
    return tasks.evaluation_set(model.config.task, _digits(model.config.task, data_root, train=False))


def _digits(task: str, data_root, *, train: bool, limit: int | None = None):
    """The MNIST digits (the first `limit`) that `task`'s images are made of; a UsageError when MultiMNIST cannot
    pair them: digits of one class (a cut data root, or a small --limit) give no pair of two classes."""
    digits = load_mnist(data_root, train=train).head(limit)
    classes = digits.labels.unique().tolist()
    if task == "multimnist" and len(classes) < 2:
        where = f"{default_data_root(data_root) / 'MNIST'}" + (f" (--limit {limit})" if limit else "")
        which = "training" if train else "test"
        found = f"no MNIST {which} digit was read from {where}"
        if classes:
            found = f"the {len(digits):,} MNIST {which} digits read from {where} are all {classes[0]}s"
        raise UsageError(f"MultiMNIST pairs two digits of different classes, and {found}")
    return digits


def _load_mnist_model(path, device="cpu"):
    """A model for the commands that feed it MNIST digits (trace, robustness)."""
    return _load_model(path, device, mnist_only=True)


def _require_routing(model, checkpoint) -> None:
    if not registry.has_routing(model):
        raise UsageError(f"{checkpoint} holds a {registry.kind_of(model)} model: it has no routing to trace or sweep")


def _routing_accuracy(args) -> int:
    from capsviz.analysis import routing_accuracy
    from capsviz.device import resolve_device

    model, _ = _load_model(args.checkpoint, resolve_device(args.device))
    _require_routing(model, args.checkpoint)
    own = routing_accuracy.results_path(args.checkpoint)  # NAME.routing.json beside the checkpoint
    out = Path(args.out or own)
    _check_json_out(out, own)
    _clean_before_writing(out)
    split = _test_split(model, args.data_root).head(args.limit)
    _check_full_measurement(out, len(split), model.config.task)
    command = "python -m capsviz routing-accuracy --checkpoint " + routing_accuracy.display_path(args.checkpoint)
    if args.limit:
        command += f" --limit {args.limit}"
    results = routing_accuracy.measure(model, split, checkpoint=args.checkpoint, command=command)
    routing_accuracy.write(results, out)
    for r, accuracy in results["accuracy"].items():
        print(f"{r} iteration(s): {accuracy:.4%} ({results['errors'][r]} errors of {results['test_images']})")
    print(f"written to {out}")
    return 0


def _multimnist_claims(args) -> int:
    from capsviz.analysis import multimnist_claims
    from capsviz.analysis.routing_accuracy import display_path

    out = Path(args.out or multimnist_claims.REPORT)
    _check_json_out(out, multimnist_claims.REPORT)
    paths = {name: Path(args.models) / f"{name}.safetensors" for name in multimnist_claims.MODELS}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise UsageError(f"not shipped: {', '.join(missing)}")
    multimnist_claims.check_models(paths)  # each file's kind, task and card, before the test pairs are drawn
    pairs = multimnist.fixed_test_pairs(_digits("multimnist", args.data_root, train=False))
    _check_full_measurement(out, len(pairs.labels), "multimnist")
    _clean_before_writing(out)
    command = "python -m capsviz multimnist-claims" + "".join(
        f" {option} {value}" for option, value in (("--models", args.models), ("--out", args.out))
        if value is not None and not (option == "--models" and Path(value).resolve() == PRETRAINED_DIR.resolve())
    )  # fmt: skip
    paths = {name: Path(display_path(path)) for name, path in paths.items()}
    report = multimnist_claims.measure(paths, pairs, command=command)
    atomic_write(out, (json.dumps(report, indent=2) + "\n").encode())
    print(multimnist_claims.markdown(report), end="")
    print(f"written to {out}", file=sys.stderr)
    return 0


def _robustness(args) -> int:
    from capsviz.analysis import robustness
    from capsviz.analysis.routing_accuracy import display_path
    from capsviz.device import device_description, resolve_device

    device = resolve_device(args.device)
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None and out_dir.exists() and not (out_dir.is_dir() and os.access(out_dir, os.W_OK)):
        raise UsageError(f"--out-dir {out_dir} must be a writable folder (checked before the measurement)")
    given = [*robustness.shipped_models(), *map(Path, args.checkpoint)]
    paths = list({path.resolve(): display_path(path) for path in given}.values())  # each file once
    models = [(path, *_load_mnist_model(path, device)) for path in paths]  # every file checked before measuring
    for path, _, card in models:
        robustness.model_name(card, path)  # a name the tables can hold, before any measurement
    split = load_mnist(args.data_root, train=False).head(args.limit)
    if out_dir is not None:
        _check_full_measurement(out_dir / "robustness.json", len(split), "mnist")
    if out_dir is not None:
        _clean_before_writing(*(out_dir / name for name in robustness.FILES))
    entries = []
    for path, model, card in models:
        print(f"measuring {path} on {len(split)} images ...", file=sys.stderr, flush=True)
        measured = robustness.measure(
            model, split, seed=args.seed, sweep_limit=args.sweep_limit, on_batch=_progress_line
        )
        entries.append(robustness.model_entry(model, card, path, measured))
    command = "python -m capsviz robustness" + "".join(f" --checkpoint {c}" for c in args.checkpoint)
    command += (f" --limit {args.limit}" if args.limit else "") + (f" --seed {args.seed}" if args.seed else "")
    command += f" --sweep-limit {args.sweep_limit}" if args.sweep_limit else ""
    result = robustness.report(
        entries,
        split,
        seed=args.seed,
        command=command,
        hardware=device_description(device),
        sweep_limit=args.sweep_limit,
    )
    if out_dir is not None:
        replace_together({out_dir / name: data for name, data in robustness.files(result).items()})
    print(json.dumps(result) if args.json else robustness.markdown(result))
    return 0


def _progress_line(done: int, total: int) -> None:
    print(f"  {done}/{total} images", file=sys.stderr, flush=True)
