"""python -m capsviz.bench: capsviz against the reference, and the app's latency, as a Markdown table + JSON.

    python -m capsviz.bench                          # everything, on CUDA when there is one
    python -m capsviz.bench --device cpu --sections interaction,app
    python -m capsviz.bench --device cuda --epoch --plain --compile --json gpu.json

Sections: training (images/s of capsviz's TrainStep and of the reference, same run, same
device, same batch), interaction (inference with the trace, decode, figures; on --device),
app (Streamlit's AppTest: a new drawing, a slider move; needs streamlit, CPU only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from capsviz.data import DataUnavailableError, default_data_root, load_mnist
from capsviz.train import DeviceUnavailableError, device_description, resolve_device

SECTIONS = ("training", "interaction", "app")
TARGETS = {  # the targets: (text, check on the measured value)
    "cpu_training_ratio": ("≥ 3x reference", lambda v: v >= 3.0),
    "cuda_training_ratio": ("≥ 10x reference", lambda v: v >= 10.0),
    "cuda_epoch": ("≤ 3 s", lambda v: v <= 3.0),
    "inference_with_trace": ("≤ 30 ms", lambda v: v <= 0.030),
    "decode": ("≤ 2 ms", lambda v: v <= 0.002),
    "figures": ("≤ 50 ms", lambda v: v <= 0.050),
    "slider_fragment": ("≤ 100 ms", lambda v: v <= 0.100),
    "stroke_full_rerun": ("≤ 300 ms", lambda v: v <= 0.300),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsviz.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per method and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating between methods")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps per method first")
    parser.add_argument("--epoch", action="store_true", help="also time one full capsviz epoch (GPU)")
    parser.add_argument("--plain", action="store_true", help="also time capsviz's plain path")
    parser.add_argument("--compile", action="store_true", help="time capsviz with torch.compile")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference (it needs a lot of memory)")
    parser.add_argument("--repeat", type=int, default=30, help="repetitions of each interaction measurement")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", default=None, help="where to write the results (default: print only)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        results = run(args, sections, device)
    except (DataUnavailableError, DeviceUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def run(args, sections: list[str], device: torch.device) -> dict:
    results = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m capsviz.bench " + " ".join(sys.argv[1:]),
        "device": device.type,
        "hardware": device_description(device),
        "cpu": device_description(torch.device("cpu")),
        "torch": torch.__version__,
    }
    if "training" in sections:
        from capsviz.bench.training import training_throughput

        root = default_data_root(args.data_root)
        results["training"] = training_throughput(
            load_mnist(root, train=True),
            root,
            device,
            batch_size=args.batch_size,
            steps=args.steps,
            rounds=args.rounds,
            warmup=args.warmup,
            plain=args.plain,
            compile=args.compile,
            reference=not args.no_reference,
            epoch=args.epoch,
        )
    if "interaction" in sections:
        from capsviz.bench.interaction import interaction_latency
        from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint

        model, _ = load_checkpoint(SHIPPED_CHECKPOINT, device)
        results["interaction"] = interaction_latency(model, repeat=args.repeat)
    if "app" in sections:
        try:
            from capsviz.bench.app import app_latency
        except ImportError:  # the GPU machine has no streamlit
            results["app"] = {"skipped": "streamlit is not installed"}
        else:
            results["app"] = app_latency()
    return results


def markdown(results: dict) -> str:
    """The results as a Markdown table: measure, capsviz, reference, ratio, target, met."""
    rows = []
    device = results["device"]

    def row(measure, value, reference="", ratio="", target_key=None, raw=None):
        target, met = "", ""
        if target_key:
            text, check = TARGETS[target_key]
            target, met = text, ("yes" if check(raw) else "**no**")
        rows.append(f"| {measure} | {value} | {reference} | {ratio} | {target} | {met} |")

    training = results.get("training")
    if training:
        methods = training["methods"]
        ref = methods.get("reference")
        batch = training["batch_size"]
        for name, m in methods.items():
            if name == "reference":
                continue
            ratio = m.get("vs_reference")
            row(
                f"training, {name}, images/s (batch {batch})",
                f"{m['images_per_s']:.1f}",
                f"{ref['images_per_s']:.1f}" if ref else "",
                f"{ratio:.2f}x" if ratio else "",
                f"{device}_training_ratio" if ratio and name == "capsviz" else None,
                ratio,
            )
        capsviz = methods["capsviz"]
        kind = "measured" if capsviz["epoch_measured"] else "estimated from the steps"
        row(
            f"training, time per epoch (60,000 images, {kind})",
            f"{capsviz['epoch_seconds']:.1f} s",
            f"{ref['epoch_seconds']:.1f} s" if ref else "",
            "",
            "cuda_epoch" if device == "cuda" else None,
            capsviz["epoch_seconds"],
        )
        for name, seconds in training.get("compile_seconds", {}).items():
            row(f"training, {name}: first step incl. torch.compile", f"{seconds:.1f} s")
    interaction = results.get("interaction")
    if interaction:
        labels = {
            "preprocess": "drawing → 28x28 (to_mnist)",
            "inference_with_trace": "one image through the model with the full routing trace",
            "decode": "one decode (a pose-slider move, outside Streamlit)",
            "figures": "all Explore figures for one input",
            "figure4_grid": "Figure-4 grid: 176 decodes + PNG",
        }
        for key, label in labels.items():
            target = key if key in TARGETS else None
            row(label, f"{interaction[key] * 1000:.1f} ms", target_key=target, raw=interaction[key])
    app = results.get("app")
    if app and "skipped" not in app:
        row(
            "app: new drawing → lengths, routing, poses (full script rerun)",
            f"{app['stroke_full_rerun'] * 1000:.0f} ms",
            target_key="stroke_full_rerun",
            raw=app["stroke_full_rerun"],
        )
        row(
            "app: pose-slider move (the fragment's server-side run)",
            f"{app['slider_fragment'] * 1000:.0f} ms",
            target_key="slider_fragment",
            raw=app["slider_fragment"],
        )
        row("app: pose-slider move as a full script rerun (upper bound)", f"{app['slider_full_rerun'] * 1000:.0f} ms")
    elif app:
        row("app", f"skipped: {app['skipped']}")
    header = [
        f"{results['date'][:10]} · {results['hardware']} · torch {results['torch']} · `{results['command']}`",
        "",
        "| measure | capsviz | reference | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    return "\n".join(header + rows)


if __name__ == "__main__":
    sys.exit(main())
