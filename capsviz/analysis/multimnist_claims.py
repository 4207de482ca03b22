"""The paper's MultiMNIST comparison (Sabour et al. 2017, section 6), paired on the same test pairs.

    python -m capsviz multimnist-claims [--data-root DIR]   # -> pretrained/multimnist_claims.json

Each shipped two-digit model reads the 10,000 fixed MultiMNIST test pairs; a pair is right when the two
highest scores name both its digits. Two models are compared on the pairs themselves: of the pairs only
one of them gets right, how many each gets, which gives the difference's paired standard error.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import torch

from capsviz import registry, tasks
from capsviz.analysis.robustness import markdown_cell
from capsviz.analysis.two_digits import owners
from capsviz.checkpoint import PRETRAINED_DIR, CheckpointError, load_checkpoint, read_card, read_config
from capsviz.data import to_float
from capsviz.files import read_capped, sha256_of
from capsviz.multimnist import TEST_PAIRS, Pairs

FORMAT = "capsviz-multimnist-claims"
REPORT = PRETRAINED_DIR / "multimnist_claims.json"
ROUTED = "capsnet_multimnist"  # the CapsNet whose couplings are measured
MODELS = ("capsnet_multimnist", "capsnet_r1_multimnist", "cnn_multimnist")  # shipped names, in table order
KINDS = {"capsnet_multimnist": "capsnet", "capsnet_r1_multimnist": "capsnet", "cnn_multimnist": "cnn"}
COMPARISONS = (  # (a, b): is a better than b on the same pairs?
    ("capsnet_multimnist", "cnn_multimnist"),
    ("capsnet_multimnist", "capsnet_r1_multimnist"),
    ("capsnet_r1_multimnist", "cnn_multimnist"),
)
PAPER_ERROR = {"capsnet_multimnist": 0.052, "cnn_multimnist": 0.081}  # section 6; the CNN had 24.56M parameters


def top_two(model: torch.nn.Module, pairs: Pairs, *, batch_size: int = 200) -> torch.Tensor:
    """(N, 2): the two digits the model names for each pair, its two highest scores."""
    device = next(model.parameters()).device
    named = []
    with registry.evaluating(model), torch.no_grad():
        for start in range(0, len(pairs.labels), batch_size):
            images = to_float(pairs.images[start : start + batch_size].to(device))  # (B, 1, 36, 36)
            named.append(tasks.predict(model.scores(images).cpu(), 2))  # (B, 2)
    return torch.cat(named)


def right_per_pair(named: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """named, labels (N, 2) -> (N,) bool: both digits of each pair named, in any order."""
    return (named.sort(dim=1).values == labels.sort(dim=1).values).all(dim=1)


def digits_named(named: torch.Tensor, labels: torch.Tensor) -> int:
    """How many of the 2N digits are among the two named for their pair."""
    return int((labels[:, :, None] == named[:, None, :]).any(dim=2).sum())


def coupling_to_own(capsnet: torch.nn.Module, pairs: Pairs, *, batch_size: int = 100) -> dict:
    """Over all pairs, at the primary positions one digit's ink dominates (capsviz.analysis.two_digits.owners):
    the mean coupling they send to that digit ("own") and to the other one ("other"), iteration by iteration."""
    iterations = capsnet.config.routing_iters
    own, other, positions = torch.zeros(iterations), torch.zeros(iterations), 0  # (R,) sums over positions
    types = capsnet.config.primary_types
    with registry.evaluating(capsnet), torch.no_grad():
        for start in range(0, len(pairs.labels), batch_size):
            images = to_float(pairs.images[start : start + batch_size])  # (B, 1, 36, 36)
            labels = pairs.labels[start : start + batch_size]  # (B, 2)
            _, trace, _ = capsnet.encode(images, iterations, trace=True)
            b, r, n, _ = trace.couplings.shape  # (B, R, N, J)
            to_pair = trace.couplings.gather(-1, labels[:, None, None, :].expand(b, r, n, 2))  # (B, R, N, 2)
            grid = int(round((n // types) ** 0.5))
            share = to_pair.view(b, r, types, grid, grid, 2).mean(dim=2)  # (B, R, G, G, 2)
            owner = torch.from_numpy(owners(pairs.singles[start : start + batch_size], capsnet.config))  # (B, G, G)
            for k in (0, 1):
                mask = owner == k  # (B, G, G)
                own += share[..., k].permute(1, 0, 2, 3)[:, mask].sum(dim=1)  # (R, B, G, G) -> (R, owned) -> (R,)
                other += share[..., 1 - k].permute(1, 0, 2, 3)[:, mask].sum(dim=1)  # the same, to the other digit
                positions += int(mask.sum())
    n = max(positions, 1)
    return {"positions": positions, "own": (own / n).tolist(), "other": (other / n).tolist()}


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    """a, b (N,) bool on the same pairs -> a's lead in accuracy, with its paired standard error."""
    n = len(a)
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    lead = (a_only - b_only) / n
    se = math.sqrt(max(a_only + b_only - (a_only - b_only) ** 2 / n, 0.0)) / n
    return {"a_only": a_only, "b_only": b_only, "lead": lead, "se": se, "z": lead / se if se else 0.0}


def check_models(paths: dict[str, Path]) -> None:
    """Each file, from its header alone: the kind its name says (KINDS), a two-digit model that reads the
    MultiMNIST canvas, and a card whose fields the table shows; a CheckpointError names the first that is not."""
    for name, path in paths.items():
        config = read_config(path)
        kind = registry.kind_of(config)
        if kind != KINDS.get(name, kind):
            raise CheckpointError(f"{path} holds a {kind} model; the comparison reads {name} as a {KINDS[name]}")
        problem = _two_digit_mismatch(config)
        if problem:
            raise CheckpointError(f"{path}: {problem}")
        card_epochs(read_card(path), path)


def _two_digit_mismatch(config) -> str | None:
    """Why a model of `config` cannot read the MultiMNIST test pairs, or None when it can."""
    if config.task != "multimnist":
        return f"it was trained on {config.task}, not on MultiMNIST pairs"
    return tasks.mismatch(config)


def card_epochs(card: dict, path) -> int | None:
    """The card's epoch count (None when it has none); a CheckpointError for anything but a whole count."""
    epochs = card.get("epochs")
    if epochs is not None and (type(epochs) is not int or epochs < 0):
        raise CheckpointError(f"{path} has an unreadable card: 'epochs' is {str(epochs)[:40]!r}, not a count of epochs")
    return epochs


def measure(paths: dict[str, Path], pairs: Pairs, *, command: str) -> dict:
    """Each model's accuracy and digits named on `pairs`, and the paired comparisons among those given."""
    right, models = {}, {}
    for name, path in paths.items():
        model, card = load_checkpoint(path)
        named = top_two(model, pairs)  # (N, 2)
        right[name] = right_per_pair(named, pairs.labels)
        models[name] = {
            "checkpoint": str(path),
            "sha256": sha256_of(path),
            "kind": registry.kind_of(model),
            "routing_iters": getattr(model.config, "routing_iters", None),
            "parameters": sum(p.numel() for p in model.parameters()),
            "epochs": card_epochs(card, path),
            "accuracy": right[name].float().mean().item(),
            "errors": int((~right[name]).sum()),
            "digits_named": digits_named(named, pairs.labels) / (2 * len(pairs.labels)),
        }
    coupling = None
    if ROUTED in paths:
        coupling = coupling_to_own(load_checkpoint(paths[ROUTED])[0], pairs)
    comparisons = [{"a": a, "b": b, **paired(right[a], right[b])} for a, b in COMPARISONS if a in right and b in right]
    return {
        "format": FORMAT,
        "test_pairs": len(pairs.labels),
        "models": models,
        "comparisons": comparisons,
        "coupling": coupling,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def markdown(report: dict) -> str:
    """The report as two tables: each model, then each paired comparison."""
    lines = [
        f"On the {report['test_pairs']:,} MultiMNIST test pairs (a pair is right when both digits are named).",
        "",
        "| model | parameters | epochs | pairs right | error | digits named | paper's error |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in report["models"].items():
        paper = f"{PAPER_ERROR[name]:.1%}" if name in PAPER_ERROR else "-"
        routing = f", {m['routing_iters']} routing iteration(s)" if m["routing_iters"] else ""
        epochs = "-" if m["epochs"] is None else m["epochs"]
        cells = [f"`{name}` ({m['kind']}{routing})", f"{m['parameters']:,}", epochs, f"{m['accuracy']:.2%}",
                 f"{1 - m['accuracy']:.2%}", f"{m['digits_named']:.2%}", paper]  # fmt: skip
        lines.append("| " + " | ".join(map(markdown_cell, cells)) + " |")  # each one cell, whatever a card held
    lines += [
        "",
        "| a vs b | only a right | only b right | a's lead | paired SE | z |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in report["comparisons"]:
        lines.append(
            f"| `{c['a']}` vs `{c['b']}` | {c['a_only']} | {c['b_only']} | {c['lead'] * 100:+.2f} points | "
            f"{c['se'] * 100:.2f} | {c['z']:+.1f} |"
        )
    coupling = report.get("coupling")
    if coupling:
        own = " / ".join(f"{v:.2%}" for v in coupling["own"])
        other = " / ".join(f"{v:.2%}" for v in coupling["other"])
        lines += ["", f"`{ROUTED}`'s couplings at the {coupling['positions']:,} primary positions one digit's ink "
                  f"dominates, iteration 1 / 2 / ...: to that digit {own}; to the other digit {other} "
                  "(uniform: 10%)."]  # fmt: skip
    return "\n".join(lines) + "\n"


MAX_ITERATIONS = 5
MAX_REPORT_BYTES = 1 << 20  # a report is about 2 kB; a bigger file is not one


def load(path: Path = REPORT) -> dict | None:
    """The report, or None when it is missing, too big or not of this shape (a crafted file is never shown)."""
    try:
        report = json.loads(read_capped(path, MAX_REPORT_BYTES))
        if report["format"] != FORMAT:
            return None
        models, comparisons = report["models"], report["comparisons"]
        rows = [(str(name), _fraction(m["accuracy"]), str(m["sha256"])) for name, m in models.items()]
        pairs = [(str(c["a"]), str(c["b"]), _number(c["lead"]), _number(c["se"])) for c in comparisons]
        n = report["test_pairs"]
        coupling = report.get("coupling")
        if coupling is not None:
            coupling = {side: [_fraction(v) for v in _list(coupling[side])] for side in ("own", "other")}
            if not coupling["own"] or len(coupling["own"]) != len(coupling["other"]):
                raise ValueError("the coupling's iterations")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    if type(n) is not int or not 0 < n <= TEST_PAIRS or len(rows) > len(MODELS) or len(pairs) > len(COMPARISONS):
        return None
    return {
        "test_pairs": n,
        "models": {name: {"accuracy": a, "sha256": h} for name, a, h in rows},
        "comparisons": [dict(zip(("a", "b", "lead", "se"), row)) for row in pairs],
        "coupling": coupling,
    }


def _list(value) -> list:
    if not isinstance(value, list) or len(value) > MAX_ITERATIONS:
        raise ValueError(value)
    return value


def _number(value) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _fraction(value) -> float:
    if not 0.0 <= _number(value) <= 1.0:
        raise ValueError(value)
    return float(value)
