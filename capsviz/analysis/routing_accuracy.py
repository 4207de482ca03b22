"""What routing adds to a model: test accuracy after 1, 2, ..., 5 routing iterations (MNIST digits, or
MultiMNIST pairs with both digits right for a two-digit model).

    python -m capsviz routing-accuracy [--checkpoint PATH] [--data-root DIR]
    # -> PATH with suffix .routing.json, e.g. pretrained/capsnet_mnist.routing.json

One pass over the test set with the most iterations measures every count at once: the
state after iteration r of a 5-iteration run is exactly what an r-iteration run computes
(`capsviz.analysis.xray`; tests/test_routing_accuracy.py checks it against separate runs). The JSON
names the checkpoint by its sha256, so the app shows it only next to the weights it measured.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch

from capsviz import registry, tasks
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import Split, to_float
from capsviz.files import atomic_write, read_capped, sha256_of
from capsviz.model import CapsNet

SUFFIX = ".routing.json"
FORMAT = "capsviz-routing-accuracy"


def display_path(path: str | Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def results_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def correct_per_iteration(
    model: CapsNet, split: Split, *, iterations: int = MAX_ROUTING_ITERS, batch_size: int = 200
) -> list[int]:
    """How many of `split` the model gets right after 1..iterations routing iterations."""
    device = next(model.parameters()).device
    correct = torch.zeros(iterations, dtype=torch.long)
    with registry.evaluating(model), torch.no_grad():
        for start in range(0, len(split), batch_size):
            images = to_float(split.images[start : start + batch_size].to(device))  # (B, 1, H, W)
            labels = split.labels[start : start + batch_size].to(device)
            _, trace, _ = model.encode(images, iterations, trace=True)
            lengths = trace.poses.norm(dim=-1)  # (B, R, J)
            correct += torch.stack([tasks.count_correct(lengths[:, r], labels) for r in range(iterations)]).cpu()
    return correct.tolist()


def measure(model: CapsNet, split: Split, *, checkpoint: str | Path, command: str) -> dict:
    correct = correct_per_iteration(model, split)
    n = len(split)
    return {
        "format": FORMAT,
        "checkpoint": display_path(checkpoint),
        "sha256": sha256_of(checkpoint),
        "test_images": n,
        "trained_routing_iters": model.config.routing_iters,
        "task": model.config.task,
        "accuracy": {str(r): c / max(n, 1) for r, c in enumerate(correct, start=1)},
        "errors": {str(r): n - c for r, c in enumerate(correct, start=1)},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def write(results: dict, path: str | Path) -> Path:
    """Atomically: a half-written file never replaces a good one."""
    path = Path(path)
    if path.suffix != ".json":  # never a checkpoint, the shipped one included
        raise ValueError(f"{path}: routing results are written as .json")
    atomic_write(path, (json.dumps(results, indent=2) + "\n").encode())
    return path


MAX_REPORT_BYTES = 1 << 20  # a report is under 1 kB; a bigger file is not one
MAX_TEST_IMAGES = 10**9


def load_for(checkpoint: str | Path, sha256: str | None = None) -> dict | None:
    """The measured results next to `checkpoint`, or None when absent or for other weights.

    Raises ValueError (saying what is wrong) for a report that is there but not one this command writes:
    it is read once here, so what the app shows from it cannot fail later.
    sha256: the checkpoint's digest when the caller already has it.
    """
    path = results_path(checkpoint)
    try:
        results = json.loads(read_capped(path, MAX_REPORT_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path.name} could not be read ({exc})") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT or not isinstance(results.get("sha256"), str):
        raise ValueError(f"{path.name} is not a {FORMAT} report")
    if results["sha256"] != (sha256 or sha256_of(checkpoint)):
        return None
    return validated(results, path.name)


def validated(results: dict, name: str) -> dict:
    """`results` when each field the app shows has its type and range (accuracies and errors per routing count
    "1" to "r", r at most MAX_ROUTING_ITERS); else ValueError naming the first field that does not."""
    counts = [str(r) for r in range(1, MAX_ROUTING_ITERS + 1)]
    checks = {  # in order: each may rely on the ones before it
        "test_images": lambda v: type(v) is int and 0 < v <= MAX_TEST_IMAGES,
        "accuracy": lambda v: (
            isinstance(v, dict)
            and 0 < len(v)
            and list(v) == counts[: len(v)]
            and all(type(a) in (int, float) and 0 <= a <= 1 for a in v.values())
        ),
        "errors": lambda v: (
            isinstance(v, dict)
            and list(v) == list(results["accuracy"])
            and all(type(e) is int and 0 <= e <= results["test_images"] for e in v.values())
        ),
        "trained_routing_iters": lambda v: type(v) is int and 1 <= v <= MAX_ROUTING_ITERS,
        "date": lambda v: isinstance(v, str),
        "command": lambda v: isinstance(v, str),
    }
    for key, ok in checks.items():
        if not ok(results.get(key)):
            raise ValueError(f"{name}: its {key!r} is not what routing-accuracy writes")
    return results
