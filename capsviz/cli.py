"""The `python -m capsviz` command line: train, evaluate, predict.

python -m capsviz train --epochs 10 --batch-size 128 --device auto --out runs/first
python -m capsviz evaluate --json                    # the shipped checkpoint on MNIST test
python -m capsviz predict digit.png other.jpg --json
python -m capsviz trace digit.png --out digit-trace.safetensors   # the full routing trace of one image
python -m capsviz routing-accuracy                  # test accuracy after 1..5 iterations -> JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

from capsviz.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_checkpoint
from capsviz.data import DataUnavailableError, load_mnist
from capsviz.model import MAX_ROUTING_ITERS
from capsviz.train import BatchEnd, Callback, DeviceUnavailableError, EpochEnd

ITERATIONS = range(1, MAX_ROUTING_ITERS + 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsviz", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("train", help="train a CapsNet on MNIST")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-decay", type=float, default=0.96, help="learning-rate factor per epoch")
    t.add_argument("--lr-schedule", choices=["exp", "cosine"], default="exp", help="exp: lr x decay^(epoch-1)")
    t.add_argument("--lr-min", type=float, default=0.0, help="cosine: the last epoch's learning rate")
    t.add_argument("--routing-iters", type=int, default=3, choices=ITERATIONS)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    t.add_argument("--data-root", default=None)
    t.add_argument("--out", required=True, help="run folder: last.safetensors, log.json, log.csv")
    t.add_argument("--resume", default=None, help="a run's last.safetensors to continue")
    t.add_argument("--init", default=None, help="start from a checkpoint's weights with a fresh optimizer")
    t.add_argument("--limit", type=int, default=None, help="use only the first N train and test images")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    t.add_argument("--compile", action="store_true", help="torch.compile the model and loss (slow start)")
    t.add_argument(
        "--plain", action="store_true", help="turn the fast path off: float32, NCHW, no fused Adam (capsviz.fastpath)"
    )

    e = commands.add_parser("evaluate", help="accuracy on the 10,000 MNIST test images")
    e.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    e.add_argument("--data-root", default=None)
    e.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    e.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)
    e.add_argument("--limit", type=int, default=None)
    e.add_argument("--json", action="store_true")

    p = commands.add_parser("predict", help="classify image files (drawings, photos, scans)")
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    p.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)
    p.add_argument("--json", action="store_true")

    x = commands.add_parser("export", help="convert a run's checkpoint into a shippable model + card")
    x.add_argument("checkpoint", help="a run's last.safetensors")
    x.add_argument("--out", default=str(SHIPPED_CHECKPOINT))
    x.add_argument("--half", action="store_true", help="store weights as float16 (about 16 MB)")
    x.add_argument("--data-root", default=None)
    x.add_argument("--note", default="", help="free text for the card (how it was trained, on what)")

    tr = commands.add_parser("trace", help="write one image's full routing trace (safetensors; capsviz.trace_export)")
    tr.add_argument("image")
    tr.add_argument("--out", required=True, help="the .safetensors file to write")
    tr.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    tr.add_argument("--routing-iters", type=int, default=None, choices=ITERATIONS)

    ra = commands.add_parser("routing-accuracy", help="MNIST test accuracy after 1..5 routing iterations -> JSON")
    ra.add_argument("--checkpoint", default=str(SHIPPED_CHECKPOINT))
    ra.add_argument("--data-root", default=None)
    ra.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ra.add_argument("--limit", type=int, default=None, help="only the first N test images (the JSON says so)")
    ra.add_argument("--out", default=None, help="default: next to the checkpoint, NAME.routing.json")

    args = parser.parse_args(argv)
    try:
        commands_by_name = {
            "train": _train,
            "evaluate": _evaluate,
            "predict": _predict,
            "export": _export,
            "trace": _trace,
            "routing-accuracy": _routing_accuracy,
        }
        return commands_by_name[args.command](args)
    except (DataUnavailableError, CheckpointError, DeviceUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last complete epoch's checkpoint is kept", file=sys.stderr)
        return 130


def _train(args) -> int:
    from capsviz import distributed
    from capsviz.fastpath import FAST, PLAIN
    from capsviz.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    place = distributed.from_env()  # set by torchrun; a single process otherwise
    device = distributed.setup(args.device, place) if place.enabled else args.device
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_decay=args.lr_decay,
        lr_schedule=args.lr_schedule,
        lr_min=args.lr_min,
        routing_iters=args.routing_iters,
        seed=args.seed,
        device=device,
        fast=dataclasses.replace(PLAIN if args.plain else FAST, compile=args.compile),
    )
    try:
        train_split = load_mnist(args.data_root, train=True).head(args.limit)
        test_split = load_mnist(args.data_root, train=False).head(args.limit)
        callbacks = [_Progress()] if place.is_main else []
        result = train(
            train_split,
            test_split,
            args.out,
            config,
            callbacks=callbacks,
            resume=args.resume,
            init=args.init,
            place=place,
        )
    finally:
        distributed.shutdown()
    if not place.is_main:
        return 0
    if result.checkpoint is None:
        print(f"{result.status}: nothing to do (the run already has {args.epochs} epochs)")
    else:
        print(f"{result.status}: {result.checkpoint}")
    return 0


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
    from capsviz.train import evaluate, resolve_device

    device = resolve_device(args.device)
    model, card = load_checkpoint(args.checkpoint, device)
    split = load_mnist(args.data_root, train=False).head(args.limit)
    accuracy, n = evaluate(model, split, routing_iters=args.routing_iters)
    if args.json:
        print(
            json.dumps(
                {
                    "accuracy": accuracy,
                    "n": n,
                    "errors": n - round(accuracy * n),
                    "checkpoint": str(args.checkpoint),
                    "routing_iters": args.routing_iters or model.config.routing_iters,
                }
            )
        )
    else:
        print(f"{args.checkpoint}: accuracy {accuracy:.4%} on {n} MNIST test images ({n - round(accuracy * n)} errors)")
    return 0


def _predict(args) -> int:
    from PIL import Image, UnidentifiedImageError

    from capsviz.preprocess import to_mnist

    model, _ = load_checkpoint(args.checkpoint)
    results, failed = [], 0
    for path in args.images:
        entry = {"path": path}
        try:
            with Image.open(path) as image:
                image.load()
                x = to_mnist(image)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            entry.update(label=None, lengths=None, error=f"cannot read image: {exc}")
            failed += 1
            results.append(entry)
            if not args.json:
                print(f"{path}: error: cannot read image ({exc})", file=sys.stderr)
            continue
        if x is None:
            entry.update(label=None, lengths=[0.0] * model.config.num_classes, blank=True)
        else:
            with torch.no_grad():
                out = model(x.unsqueeze(0), routing_iters=args.routing_iters)
            lengths = out.lengths[0].tolist()
            entry.update(label=int(out.lengths[0].argmax()), lengths=[round(v, 6) for v in lengths])
        results.append(entry)
        if not args.json:
            shown = "blank (draw a digit)" if entry["label"] is None else entry["label"]
            print(f"{path}: {shown}")
    if args.json:
        print(json.dumps(results))
    return 1 if failed == len(args.images) else 0


def _export(args) -> int:
    """Write weights without optimizer state, measure them on MNIST test, write the card beside."""
    import datetime as dt

    from capsviz.checkpoint import save_checkpoint
    from capsviz.train import evaluate

    model, card = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    history = card.pop("history", [])
    card = {
        "name": out.stem,
        "model": "CapsNet (Sabour, Frosst & Hinton 2017), MNIST architecture, 3 routing iterations",
        "parameters": sum(p.numel() for p in model.parameters()),
        **card,
        "storage": "float16" if args.half else "float32",
        "note": args.note,
        "exported": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "selection": "final epoch; the test set was never used for selection or early stopping",
        "test_accuracy_per_epoch": [round(h["test_accuracy"], 4) for h in history],
    }
    # measure what is shipped: write, reload (float16 -> float32), evaluate
    save_checkpoint(out, model, card, half=args.half, allow_shipped=True)
    shipped, _ = load_checkpoint(out)
    accuracy, n = evaluate(shipped, load_mnist(args.data_root, train=False))
    card.update(
        test_accuracy=accuracy,
        test_images=n,
        test_errors=n - round(accuracy * n),
        measured_by="python -m capsviz evaluate --checkpoint " + str(out),
    )
    save_checkpoint(out, shipped, card, half=args.half, allow_shipped=True)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"{out}: accuracy {accuracy:.4%} on {n} MNIST test images (after {card['storage']} storage)")
    return 0


def _trace(args) -> int:
    """One image, preprocessed as `predict` does, through the model with every iteration recorded."""
    from PIL import Image, UnidentifiedImageError

    from capsviz import trace_export
    from capsviz.preprocess import to_mnist
    from capsviz.xray import xray

    model, _ = load_checkpoint(args.checkpoint)
    try:
        with Image.open(args.image) as image:
            image.load()
            x = to_mnist(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
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


def _routing_accuracy(args) -> int:
    from capsviz import routing_accuracy
    from capsviz.train import resolve_device

    model, _ = load_checkpoint(args.checkpoint, resolve_device(args.device))
    split = load_mnist(args.data_root, train=False).head(args.limit)
    command = "python -m capsviz routing-accuracy --checkpoint " + routing_accuracy.display_path(args.checkpoint)
    if args.limit:
        command += f" --limit {args.limit}"
    results = routing_accuracy.measure(model, split, checkpoint=args.checkpoint, command=command)
    out = routing_accuracy.write(results, args.out or routing_accuracy.results_path(args.checkpoint))
    for r, accuracy in results["accuracy"].items():
        print(f"{r} iteration(s): {accuracy:.4%} ({results['errors'][r]} errors of {results['test_images']})")
    print(f"written to {out}")
    return 0
