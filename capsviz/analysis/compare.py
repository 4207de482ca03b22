"""Uniform couplings against routing, on one input: what the app's side-by-side comparison says.

    counts = compared_counts(model_iters=3, available=5)      # (1, 3)
    text = comparison_text(ray.lengths, routed=3)              # ray: a capsviz.analysis.xray.RoutingXray

Iteration 1 couples every primary capsule equally to every digit (b starts at 0), so the
lengths after one iteration are what uniform couplings give; the model's own count adds
routing by agreement. Numpy in, text out.
"""

from __future__ import annotations

import numpy as np

from capsviz.model import PAPER

UNIFORM = 1  # iterations: one pass with c_ij = 1/J


def compared_counts(model_iters: int, available: int) -> tuple[int, int]:
    """(uniform, routed): the model's own count, or the paper's when the model routes only once."""
    routed = model_iters if model_iters > UNIFORM else PAPER.routing_iters
    return UNIFORM, min(max(routed, UNIFORM), available)


def _top_two(lengths: np.ndarray) -> tuple[int, int]:
    order = np.argsort(-lengths, kind="stable")  # ties: the lower digit first
    return int(order[0]), int(order[1])


def comparison_text(lengths: np.ndarray, *, routed: int) -> str:
    """lengths: (R, J) after each iteration (R >= routed). One sentence on the winner, its length and the
    runner-up's, with uniform couplings and after `routed` iterations."""
    before, after = lengths[UNIFORM - 1], lengths[routed - 1]  # (J,), (J,)
    (w1, r1), (w2, r2) = _top_two(before), _top_two(after)
    verdict = "the same digit wins" if w1 == w2 else f"the winner changes from {w1} to {w2}"
    return (
        f"With uniform couplings (1 iteration) capsule {w1} is longest at {before[w1]:.3f}, then {r1} at "
        f"{before[r1]:.3f}; after {routed} iterations capsule {w2} is at {after[w2]:.3f}, then {r2} at "
        f"{after[r2]:.3f}: {verdict}, and the gap between the two longest goes from "
        f"{before[w1] - before[r1]:.3f} to {after[w2] - after[r2]:.3f}."
    )
