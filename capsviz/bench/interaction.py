"""Per-input latency of what the explorer does, outside Streamlit: inference with the full
routing trace, one decoder call (a pose-slider move), and the figures for one input.

The figures are the ones `capsviz.ui.views` places for one input, built from the same
`capsviz.inference.Inference`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from capsviz import perturb, viz
from capsviz.bench.timing import median_seconds
from capsviz.inference import Inference, infer
from capsviz.model import CapsNet
from capsviz.preprocess import to_mnist


def canvas_drawing(variant: int = 0, size: int = 280) -> Image.Image:
    """A white-on-black canvas like the app's: an oval "0" whose place and size vary with `variant`."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    draw = ImageDraw.Draw(image)
    shift = (variant * 37) % 60
    box = (70 + shift, 40 + shift // 2, 170 + shift, 220 + shift // 3)
    draw.ellipse(box, outline=(255, 255, 255, 255), width=18)
    return image


def all_figures(result: Inference) -> list:
    """Every figure the Explore tab shows for one input (last routing iteration, predicted digit)."""
    couplings, digit = result.couplings, result.predicted
    last = couplings.shape[0]
    return [
        viz.image_figure(result.image, "model input"),
        viz.image_figure(result.reconstruction, "reconstruction"),
        viz.lengths_figure(result.lengths, digit),
        viz.coupling_tiles_figure(couplings[-1, :, digit], digit, last, zmax=float(couplings[:, :, digit].max())),
        viz.routing_overlay_figure(result.image, couplings[-1], result.activations),
        viz.sharpening_figure(viz.coupling_entropy(couplings), result.lengths_per_iter, digit),
        viz.coupling_matrix_figure(couplings[-1]),
        viz.image_figure(result.reconstruction, f"decoded as {digit}"),
    ]


def interaction_latency(model: CapsNet, *, repeat: int = 30, routing_iters: int = 3) -> dict:
    """Median seconds of each per-input operation, on the model's device (the app uses the CPU)."""
    device = next(model.parameters()).device
    x = to_mnist(canvas_drawing())  # (1, 28, 28)
    result = infer(model, x, routing_iters)
    pose = result.poses[result.predicted]
    deltas = np.zeros(pose.shape[0], dtype=np.float32)
    deltas[3] = 0.1

    def slider_move():
        return perturb.decode_pose(model, perturb.perturb(pose, deltas), result.predicted)

    with torch.no_grad():
        return {
            "preprocess": median_seconds(lambda: to_mnist(canvas_drawing()), repeat, device=device),
            "inference_with_trace": median_seconds(lambda: infer(model, x, routing_iters), repeat, device=device),
            "decode": median_seconds(slider_move, repeat * 3, device=device),
            "figures": median_seconds(lambda: all_figures(result), repeat, device=device),
            "figure4_grid": median_seconds(
                lambda: perturb.grid_to_png(perturb.perturbation_grid(model, pose, result.predicted)),
                repeat,
                device=device,
            ),
        }
