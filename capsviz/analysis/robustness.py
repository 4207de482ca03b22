"""How each model holds up under affine transforms: MNIST test, the affNIST-like set, one-transform sweeps.

    python -m capsviz robustness [--json] [--data-root DIR] [--limit N] [--checkpoint PATH ...] [--out-dir DIR]

Every shipped model in pretrained/ and every --checkpoint given is measured on the same images:
the MNIST test set as it is, its affNIST-like version (`capsviz.analysis.affine`, seed 0) and each point
of `affine.SWEEPS`. The test set is never augmented otherwise and selects nothing. A CapsNet is
read after 1, 3 and 5 routing iterations (and its trained count) from one 5-iteration pass: the
state after iteration r is what an r-iteration run computes (`capsviz.analysis.routing_accuracy`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from capsviz import registry
from capsviz.analysis import affine
from capsviz.checkpoint import PRETRAINED_DIR, CheckpointError, read_config
from capsviz.data import Split, to_float
from capsviz.files import sha256_of

ROUTING = (1, 3, 5)
FORMAT = "capsviz-robustness"
FILES = ("robustness.md", "robustness.json", "sweeps.png")  # what --out-dir holds (`files`)
MAX_NAME = 200  # characters of a model's name in the tables


def shipped_models() -> list[Path]:
    """The shipped single-digit models: the affine tables read MNIST digits, which two-digit models do not."""
    return sorted(path for path in PRETRAINED_DIR.glob("*.safetensors") if read_config(path).task == "mnist")


def readouts(model: nn.Module) -> list[int | None]:
    """The routing counts a model is read at: None for a model without routing."""
    trained = model.config.routing_iters if registry.has_routing(model) else None
    return [None] if trained is None else sorted({*ROUTING, trained})


def conditions() -> list[tuple[str, float | None]]:
    """(name, value) of every test condition: ("mnist", None), ("affine", None), then each sweep point."""
    return [("mnist", None), ("affine", None)] + [(n, v) for n, values in affine.SWEEPS.items() for v in values]


@torch.no_grad()
def predictions(model: nn.Module, x: torch.Tensor, counts: list[int | None]) -> torch.Tensor:
    """x (B, 1, 28, 28) -> predicted classes (len(counts), B), one row per readout."""
    if counts == [None]:
        return model.scores(x).argmax(1)[None]  # (1, B)
    _, trace, _ = model.encode(x, max(counts), trace=True)
    per_iteration = trace.poses.norm(dim=-1).argmax(-1)  # (B, R, J) -> (B, R)
    return per_iteration.T[[r - 1 for r in counts]]  # (len(counts), B)


def measure(
    model: nn.Module,
    split: Split,
    *,
    seed: int = 0,
    batch_size: int = 250,
    sweep_limit: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> dict:
    """Accuracy per readout and condition: {"1": {"mnist": a, "affine": a, "rotation": [a, ...], ...}, ...}.

    MNIST and the affNIST-like set use the whole split; the sweeps its first `sweep_limit` images (all by default).
    Each readout also keeps which affNIST-like images it got right ("affine_correct", `pack`), so that two
    models or two routing counts can be compared image by image (`paired`).
    """
    counts, tests = readouts(model), conditions()
    swept = sweep_images(len(split), sweep_limit)
    correct, affine_hits = _hits(model, split, counts, swept, seed=seed, batch_size=batch_size, on_batch=on_batch)
    seen = torch.tensor([len(split)] * 2 + [swept] * (len(tests) - 2), dtype=torch.double)  # (T,)
    accuracy = (correct.double() / seen.clamp(min=1)).tolist()  # (K, T)
    result = {}
    for k, count in enumerate(counts):
        row = dict(zip([n for n, _ in tests], accuracy[k][:2]))
        row["affine_correct"] = pack(affine_hits[k].numpy())
        at = 2
        for name, values in affine.SWEEPS.items():
            row[name] = accuracy[k][at : at + len(values)]
            at += len(values)
        result["none" if count is None else str(count)] = row
    return result


def _hits(
    model: nn.Module,
    split: Split,
    counts: list[int | None],
    swept: int,
    *,
    seed: int,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many images each readout gets right per condition (K, T), and which affNIST-like ones (K, N)."""
    device = next(model.parameters()).device
    tests = conditions()
    maps = affine.affine_maps(to_float(split.images), seed=seed)  # (N, 3, 3): drawn once for the whole split
    correct = torch.zeros(len(counts), len(tests), dtype=torch.long)  # (K, T)
    affine_hits = torch.zeros(len(counts), len(split), dtype=torch.bool)  # (K, N)
    with registry.evaluating(model):
        for start in range(0, len(split), batch_size):
            x = to_float(split.images[start : start + batch_size]).to(device)  # (B, 1, 28, 28)
            labels = split.labels[start : start + batch_size].to(device)  # (B,)
            for t, (name, value) in enumerate(tests):
                n = (
                    len(x) if name in ("mnist", "affine") else max(0, min(len(x), swept - start))
                )  # sweeps: first `swept`
                if n == 0:
                    continue
                moved = _transformed(x, name, value, n, maps[start : start + batch_size])
                hits = (predictions(model, moved, counts) == labels[:n]).cpu()  # (K, n)
                correct[:, t] += hits.sum(1)
                if name == "affine":
                    affine_hits[:, start : start + n] = hits
            if on_batch is not None:
                on_batch(min(start + batch_size, len(split)), len(split))
    return correct, affine_hits


def _transformed(x: torch.Tensor, name: str, value: float | None, n: int, maps: torch.Tensor) -> torch.Tensor:
    """x (B, 1, 28, 28) under one condition: as it is, warped by its affNIST-like maps (B, 3, 3), or its
    first n at one sweep point."""
    if name == "mnist":
        return x
    if name == "affine":
        return affine.warp(x, maps)
    return affine.warp(x[:n], affine.sweep_maps(name, value, n))


def pack(hits: np.ndarray) -> str:
    """(N,) bools -> base64 of their bits (N = 10,000: 1,668 characters)."""
    return base64.b64encode(np.packbits(hits.astype(bool)).tobytes()).decode("ascii")


def unpack(text: object, n: object) -> np.ndarray | None:
    """`pack`'s text -> (n,) bools, or None for anything that is not n packed bits (a report is user data)."""
    if not _count(n):
        return None
    size = (n + 7) // 8  # bytes
    if not isinstance(text, str) or len(text) != 4 * ((size + 2) // 3):  # checked before decoding anything
        return None
    try:
        raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError):
        return None
    return np.unpackbits(raw)[:n].astype(bool) if len(raw) == size else None


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Readout a against readout b on the same N images (bools): the accuracy gap in points and its
    paired standard error; only the images where exactly one is right carry the difference."""
    n = len(a)  # > 0
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    gap = (only_a - only_b) / n  # the mean of a_i - b_i = accuracy(a) - accuracy(b)
    variance = max(only_a + only_b - n * gap**2, 0.0) / (n * max(n - 1, 1))  # of that mean
    error = 100 * float(np.sqrt(variance))
    return {
        "accuracy_a": float(a.mean()),
        "accuracy_b": float(b.mean()),
        "only_a": only_a,
        "only_b": only_b,
        "points": 100 * gap,
        "standard_error": error,
        # gap / error; a gap with no spread (every image favours one side) is infinitely many
        "standard_errors": 100 * gap / error if error > 0 else (0.0 if gap == 0 else math.copysign(math.inf, gap)),
    }


def comparisons(models: object, n: object) -> list[dict]:
    """Paired comparisons on the affNIST-like set, from a report's models: each CapsNet at its trained
    routing against each CNN ("against": "cnn"), then the CapsNet read with each other routing count
    against its trained one ("routing"). Rows whose per-image record is missing or malformed (an older or
    hand-edited report) are left out; nothing in the report can make this raise."""
    if not isinstance(models, list) or not _count(n):
        return []
    rows = []
    capsnets = [m for m in models if isinstance(m, dict) and m.get("kind") == "capsnet"]
    cnns = [m for m in models if isinstance(m, dict) and m.get("kind") == "cnn"]
    for capsnet in capsnets:
        main, trained = unpack(capsnet.get("affine_correct"), n), capsnet.get("routing_iters")
        if main is None or not _count(trained):
            continue
        name = str(capsnet.get("name"))
        for cnn in cnns:
            other = unpack(cnn.get("affine_correct"), n)
            if other is not None:
                label = str(cnn.get("name"))
                rows.append({"against": "cnn", "a": f"{name} r={trained}", "b": label, **paired(main, other)})
        by_routing = capsnet.get("by_routing") if isinstance(capsnet.get("by_routing"), dict) else {}
        for routing, values in by_routing.items():
            bits = unpack(values.get("affine_correct"), n) if isinstance(values, dict) else None
            if routing != str(trained) and bits is not None:
                a, b = f"{name} r={routing}", f"{name} r={trained}"
                rows.append({"against": "routing", "a": a, "b": b, **paired(bits, main)})
    return rows


def _count(value: object) -> bool:
    """A positive int, and not a bool (JSON's true would pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def sweep_images(total: int, sweep_limit: int | None) -> int:
    """How many of `total` test images the sweeps read."""
    return total if sweep_limit is None else min(total, sweep_limit)


def model_entry(model: nn.Module, card: dict, checkpoint: str, by_readout: dict) -> dict:
    """One model's JSON: name, kind, params, mnist and affine (at its trained routing), sweeps, every readout."""
    trained = model.config.routing_iters if registry.has_routing(model) else None
    main = by_readout["none" if trained is None else str(trained)]
    entry = {
        "name": model_name(card, checkpoint),
        "kind": registry.kind_of(model),
        "params": sum(p.numel() for p in model.parameters()),
        "checkpoint": checkpoint,
        "sha256": sha256_of(checkpoint) if Path(checkpoint).is_file() else None,  # which weights were measured
        "routing_iters": trained,
        "mnist": main["mnist"],
        "affine": main["affine"],
        "affine_correct": main["affine_correct"],  # which affNIST-like images it got right (`pack`)
        "sweeps": {name: main[name] for name in affine.SWEEPS},
    }
    if trained is not None:
        entry["by_routing"] = by_readout
    return entry


def model_name(card: dict, checkpoint) -> str:
    """The card's name (the file's stem without one); a CheckpointError for one the tables cannot hold."""
    name = card.get("name")
    if name is None or name == "":
        return Path(checkpoint).stem
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise CheckpointError(
            f"{checkpoint}: its card's 'name' is {str(name)[:40]!r}, not a text of at most {MAX_NAME} characters"
        )
    return name


def markdown_cell(text: object) -> str:
    """`text` as one Markdown table cell: no line breaks, `|` and backslashes escaped."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def _code(text: object) -> str:
    """`text` as one inline code span, whatever backticks it holds."""
    text = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def report(
    entries: list[dict], split: Split, *, seed: int, command: str, hardware: str, sweep_limit: int | None = None
) -> dict:
    """The whole run's JSON: when, where and how it was measured, the sweep values, every model."""
    shrunk = int((affine.shrink_factors(to_float(split.images), seed=seed) < 1).sum())
    return {
        "format": FORMAT,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "hardware": hardware,  # `device_description`, as cards and the bench name it
        "torch": torch.__version__,
        "test_images": len(split),
        "sweep_images": sweep_images(len(split), sweep_limit),  # the sweeps read the first ones
        "seed": seed,
        "affine_shrunk": shrunk,  # how many affine images were shrunk to keep their ink in the frame
        "sweep_values": {name: list(values) for name, values in affine.SWEEPS.items()},
        "models": entries,
    }


def _rows(entry: dict) -> list[tuple[str, dict]]:
    """(routing label, accuracies) per readout of one model: "-" for a model without routing."""
    if "by_routing" not in entry:
        return [("-", {"mnist": entry["mnist"], "affine": entry["affine"], **entry["sweeps"]})]
    return [(r, values) for r, values in entry["by_routing"].items()]


def markdown(result: dict) -> str:
    """The report as Markdown: one summary table, then one table per sweep (accuracy in %)."""
    lines = [
        f"Measured {result['date']} on {result['hardware']} (torch {result['torch']}) with {_code(result['command'])}, "
        f"{result['test_images']} MNIST test images, affine seed {result['seed']} "
        f"({result['affine_shrunk']} of them shrunk to keep their ink in the frame; `capsviz.analysis.affine`).",
        "",
        "| model | kind | parameters | routing iterations | MNIST test | affNIST-like |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for entry in result["models"]:
        for routing, values in _rows(entry):
            row = [markdown_cell(entry["name"]), entry["kind"], f"{entry['params']:,}", routing]
            lines.append("| " + " | ".join(row + [f"{values['mnist']:.2%}", f"{values['affine']:.2%}"]) + " |")
    paired_rows = comparisons(result["models"], result["test_images"])
    if paired_rows:
        lines += [
            "",
            f"Paired on the affNIST-like set (the same {result['test_images']} images; only those exactly one of the "
            "two gets right carry the difference; standard error of the mean per-image difference):",
            "",
            "| a | b | accuracy of a | accuracy of b | right only by a | right only by b | a - b (points) "
            "| standard error | in standard errors |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in paired_rows:
            cells = [markdown_cell(row["a"]), markdown_cell(row["b"])]
            cells += [f"{row['accuracy_a']:.2%}", f"{row['accuracy_b']:.2%}", row["only_a"]]
            cells += [row["only_b"], f"{row['points']:+.2f}", f"{row['standard_error']:.2f}"]
            lines.append("| " + " | ".join(map(str, cells)) + f" | {row['standard_errors']:+.1f} |")
    for name, points in result["sweep_values"].items():
        lines += ["", f"{name.capitalize()} alone (accuracy on the first {result['sweep_images']} test images):", ""]
        lines.append("| model | routing | " + " | ".join(f"{v:g}" for v in points) + " |")
        lines.append("|---|---:|" + "---:|" * len(points))
        for entry in result["models"]:
            for routing, values in _rows(entry):
                cells = [f"{a:.1%}" for a in values[name]]
                lines.append(f"| {markdown_cell(entry['name'])} | {routing} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
PANEL, MARGIN = (360, 260), 40


def sweep_plot(result: dict) -> Image.Image:
    """One panel per sweep, accuracy (y, 0 to 100%) against the transform's value (x), a line per readout."""
    lines = [(f"{e['name']}" + ("" if r == "-" else f" r={r}"), v) for e in result["models"] for r, v in _rows(e)]
    names = list(result["sweep_values"])
    image = Image.new("RGB", (PANEL[0] * len(names), PANEL[1] + 16 * len(lines) + 10), "white")
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    for p, name in enumerate(names):
        _panel(draw, font, p * PANEL[0] + MARGIN, name, result["sweep_values"][name], [v[name] for _, v in lines])
    for k, (label, _) in enumerate(lines):
        y = PANEL[1] + 16 * k
        draw.line([(MARGIN, y + 6), (MARGIN + 24, y + 6)], fill=COLOURS[k % len(COLOURS)], width=3)
        draw.text((MARGIN + 32, y), label, fill="black", font=font)
    note = f"first {result['sweep_images']} MNIST test images; where lines coincide the one listed last is drawn on top"
    draw.text((PANEL[0], PANEL[1]), note, fill="black", font=font)
    return image


def _panel(draw, font, left: int, name: str, points: list[float], curves: list[list[float]]) -> None:
    top, w, h = 24, PANEL[0] - MARGIN - 16, PANEL[1] - MARGIN - 24  # the plot area

    def at(i: int, accuracy: float) -> tuple[float, float]:
        return left + w * i / max(len(points) - 1, 1), top + h * (1 - accuracy)

    draw.rectangle([left, top, left + w, top + h], outline="#888")
    draw.text((left, 4), f"{name} alone: accuracy (0-100%)", fill="black", font=font)
    for tick in (0.0, 0.5, 1.0):
        draw.text((left - 34, at(0, tick)[1] - 6), f"{tick:.0%}", fill="black", font=font)
    for i in (0, len(points) // 2, len(points) - 1):
        draw.text((at(i, 0)[0] - 8, top + h + 4), f"{points[i]:g}", fill="black", font=font)
    for k, curve in enumerate(curves):
        draw.line([at(i, a) for i, a in enumerate(curve)], fill=COLOURS[k % len(COLOURS)], width=2)


def files(result: dict) -> dict[str, bytes]:
    """What --out-dir holds: the Markdown table, the JSON and the sweep plot (PNG)."""
    png = io.BytesIO()
    sweep_plot(result).save(png, format="PNG")
    return {
        "robustness.md": markdown(result).encode(),
        "robustness.json": (json.dumps(result, indent=2) + "\n").encode(),
        "sweeps.png": png.getvalue(),
    }
