"""python -m capsviz.bench: capsviz against the reference, and the app's latency, as a Markdown table + JSON.

    python -m capsviz.bench                          # everything, on CUDA when there is one
    python -m capsviz.bench --device cpu --sections interaction,app
    python -m capsviz.bench --device cuda --epoch --plain --compile --json gpu.json

Sections: training (images/s of capsviz's TrainStep and of the reference, same run, same
device, same batch), kernels (the CPU training path's layer choices against oneDNN),
interaction (inference with the trace, decode, figures; on --device), app (Streamlit's
AppTest: a new drawing, a slider move; needs streamlit, CPU only), browser (the running app in
headless Chromium: stroke to prediction, to every figure, live slider to image; needs playwright),
lesson (the Train tab's quick lesson preset run through AppTest, start to saved run; needs MNIST).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from capsviz.bench.report import markdown
from capsviz.bench.training import BenchWorkerError, training_throughput
from capsviz.data import DataUnavailableError, default_data_root, load_mnist
from capsviz.device import DEVICE_CHOICES, DeviceUnavailableError, device_description, resolve_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capsviz.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per method and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating between methods")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps per method first")
    parser.add_argument("--epoch", action="store_true", help="also time one full capsviz epoch (GPU)")
    parser.add_argument("--plain", action="store_true", help="also time capsviz's plain path")
    parser.add_argument("--compile", action="store_true", help="also time capsviz with torch.compile")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference (it needs a lot of memory)")
    parser.add_argument("--repeat", type=int, default=30, help="repetitions of each interaction measurement")
    parser.add_argument("--browser-repeat", type=int, default=6, help="drawings timed in the browser section")
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
    except (DataUnavailableError, DeviceUnavailableError, BenchWorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(results))
    if args.json:
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


def _save(results: dict, path: str | None) -> None:
    """Write what is measured so far: a later section that fails loses nothing before it."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(results, indent=2) + "\n")


def run(args, sections: list[str], device: torch.device) -> dict:
    """Measure each asked-for section in MEASURES' order; the JSON is rewritten after each one."""
    results = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m capsviz.bench " + " ".join(sys.argv[1:]),
        "device": device.type,
        "hardware": device_description(device),
        "cpu": device_description(torch.device("cpu")),
        "torch": torch.__version__,
    }
    for name, measure in MEASURES.items():
        if name in sections:
            results[name] = measure(args, device)
            _save(results, args.json)
    return results


def _training(args, device: torch.device) -> dict:
    root = default_data_root(args.data_root)
    load_mnist(root, train=True)  # the clear error about missing data, before any worker starts
    return training_throughput(
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


def _kernels(args, device: torch.device) -> dict:
    from capsviz.bench.kernels import kernel_latency

    return kernel_latency(device, batch_size=args.batch_size)


def _interaction(args, device: torch.device) -> dict:
    try:
        from capsviz.bench.interaction import interaction_latency
    except ImportError as exc:  # its figures need plotly, which the GPU machine lacks
        return {"skipped": f"{exc.name or exc} is not installed"}
    from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint

    model, _ = load_checkpoint(SHIPPED_CHECKPOINT, device)
    return interaction_latency(model, repeat=args.repeat)


def _app(args, device: torch.device) -> dict:
    try:
        from capsviz.bench.app import app_latency
    except ImportError:  # the GPU machine has no streamlit
        return {"skipped": "streamlit is not installed"}
    return app_latency()


def _browser(args, device: torch.device) -> dict:
    try:
        from capsviz.bench.browser import BrowserBenchError, browser_latency

        return browser_latency(repeat=args.browser_repeat)
    except ImportError as exc:  # no streamlit or playwright here
        return {"skipped": f"{exc.name or exc} is not installed"}
    except BrowserBenchError as exc:
        return {"skipped": str(exc).splitlines()[0]}  # one line: it becomes a row of the table


def _lesson(args, device: torch.device) -> dict:
    try:
        from capsviz.bench.lesson import quick_lesson
    except ImportError:
        return {"skipped": "streamlit is not installed"}
    return quick_lesson(args.data_root)


MEASURES = {  # in the order they run; report.SECTIONS tables the same names
    "training": _training,
    "kernels": _kernels,
    "interaction": _interaction,
    "app": _app,
    "browser": _browser,
    "lesson": _lesson,
}
SECTIONS = tuple(MEASURES)


if __name__ == "__main__":
    sys.exit(main())
