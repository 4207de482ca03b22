"""What each stage of the network holds for one input, for the guided path through the network.

    maps = conv1_maps(model, x)          # (256, 20, 20) Conv1 feature maps after ReLU
    types = primary_lengths(activations) # (32, 6, 6) primary-capsule lengths per capsule type

Shape letters: C = 256 Conv1 channels, T = 32 primary capsule types, G = 6 the primary grid.
"""

from __future__ import annotations

import numpy as np
import torch

from capsviz.model import CapsNet

STAGES = (  # (name, what it holds, what it does): the guided path's stations, in order
    ("Input", "28×28 grey pixels", "The digit, centred and scaled like MNIST."),
    ("Conv1", "256 feature maps of 20×20", "9×9 filters find local strokes and edges: one map per filter."),
    (
        "PrimaryCaps",
        "32 types × 6×6 positions of 8-D capsules",
        "Groups of feature detectors become vectors: a capsule's length says a part is there, its direction how.",
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
