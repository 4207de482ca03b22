"""What each stage of the network holds for one input, for the guided path through the network.

    maps = conv1_maps(model, x)          # (256, 20, 20) Conv1 feature maps after ReLU
    turns = turn_from_blank(model, x)    # (32, 6, 6) how far each primary capsule turns from a blank input's
    types = primary_lengths(activations) # (32, 6, 6) primary-capsule lengths per capsule type

Shape letters: C = 256 Conv1 channels, T = 32 primary capsule types, G = 6 the primary grid,
N = T*G*G primary capsules of I = 8 dimensions.
"""

from __future__ import annotations

import numpy as np
import torch

from capsviz.analysis.inference import CONFIDENT_LENGTH
from capsviz.model import CapsNet

TURN_SCALE = (0.0, 180.0)  # degrees: the fixed colour scale of the primary capsules' turns
SATURATED = 0.9  # this share of primary capsules longer than CONFIDENT_LENGTH: their length says nothing

STAGES = (  # (name, what it holds, what it does): the guided path's stations, in order
    ("Input", "28×28 grey pixels", "The digit, centred and scaled like MNIST."),
    ("Conv1", "256 feature maps of 20×20", "9×9 filters find local strokes and edges: one map per filter."),
    (
        "PrimaryCaps",
        "32 types × 6×6 positions of 8-D capsules",
        "Groups of feature detectors become 8-D vectors, one per type and position. What each found is in its "
        "direction, which turns where the input has strokes.",
    ),
    (
        "DigitCaps",
        "10 capsules of 16-D",
        "Each primary capsule votes for each digit's pose; routing by agreement keeps the votes that agree.",
    ),
    ("Decoder", "28×28 reconstruction", "Three dense layers redraw the digit from the longest capsule alone."),
)


def conv1_maps(model: CapsNet, x: torch.Tensor) -> np.ndarray:
    """(1, 28, 28) input -> (C, 20, 20) Conv1 activations after ReLU, as float32 numpy."""
    device = next(model.parameters()).device
    with torch.no_grad():
        maps = torch.relu(model.conv1(x.unsqueeze(0).to(device)))  # (1, C, 20, 20)
    return maps[0].float().cpu().numpy()  # (C, 20, 20)


def primary_lengths(activations: np.ndarray, grid: int = 6) -> np.ndarray:
    """(N,) type-major primary capsule lengths -> (T, G, G), capsule n = type*G*G + row*G + col."""
    a = np.asarray(activations, dtype=np.float32).reshape(-1)  # (N,)
    return a.reshape(-1, grid, grid)  # (T, G, G)


def primary_capsules(model: CapsNet, x: torch.Tensor) -> np.ndarray:
    """(1, 28, 28) input -> (N, I) primary capsules (squashed), type-major, as float32 numpy."""
    device = next(model.parameters()).device
    with torch.no_grad():
        primary = model.primary(torch.relu(model.conv1(x.unsqueeze(0).to(device))))  # (1, N, I)
    return primary[0].float().cpu().numpy()  # (N, I)


def turn_from_blank(model: CapsNet, x: torch.Tensor, grid: int = 6) -> np.ndarray:
    """How far each primary capsule's direction turns from its direction on an all-black input: (T, G, G) degrees.

    On a blank input no capsule sees a stroke, so 0 degrees means "reads what it reads on an empty image".
    """
    blank = primary_capsules(model, torch.zeros_like(x))  # (N, I)
    return angles(primary_capsules(model, x), blank).reshape(-1, grid, grid)  # (T, G, G)


def angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between rows of (N, I) and (N, I), 0..180; NaN where either vector is zero (no direction)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)  # (N,)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, (a * b).sum(axis=-1) / norms, np.nan)  # (N,)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).astype(np.float32)  # (N,)


def length_note(lengths: np.ndarray) -> str:
    """What the primary capsules' (N,) lengths say on this input, measured, so the guided path's claim holds
    for whichever model is loaded."""
    lengths = np.asarray(lengths, dtype=np.float64).reshape(-1)  # (N,)
    share = float((lengths > CONFIDENT_LENGTH).mean())
    measured = (
        f"On this input {share:.1%} of the {lengths.size:,} primary capsules are longer than {CONFIDENT_LENGTH} "
        f"(median length {np.median(lengths):.2f})"
    )
    if share >= SATURATED:
        return (
            f"{measured}, background included: in this model a primary capsule's length does not say whether a part "
            "is there, its direction does."
        )
    return (
        f"{measured}: lengths vary in this model, so a long primary capsule can mark a part; its direction says what."
    )
