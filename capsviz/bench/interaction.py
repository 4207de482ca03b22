"""Per-input latency of what the explorer does, outside Streamlit: inference with the full
routing trace, the routing X-ray of every iteration (once per input), one decoder call (a
pose-slider move), and the figures for one input.

The figures are the ones `capsviz.ui.views` places for one input, built from the same
`capsviz.analysis.inference.Inference`.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from capsviz.analysis import perturb, xray
from capsviz.analysis.inference import Inference, infer
from capsviz.bench.timing import median_seconds
from capsviz.figures import viz, viz_routing
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


def all_figures(result: Inference, ray: xray.RoutingXray, config) -> list:
    """The figures a new drawing draws (the default Couplings view, last iteration, predicted digit):
    Plotly figures, and the spec of the tiles the page draws itself."""
    digit = result.predicted
    couplings = ray.couplings[-1]  # (N, J)
    return [
        viz.image_figure(result.image, "model input"),
        viz.image_figure(result.reconstruction, "reconstruction"),
        viz.lengths_figure(result.lengths, digit),
        viz.coupling_tiles_spec(couplings[:, digit], digit, ray.iterations),  # drawn in the page
        viz_routing.split_overlay_figure(
            ray.image, xray.position_split(couplings, ray.grid), xray.field_centres(config), iteration=ray.iterations
        ),
        viz.coupling_matrix_figure(couplings, ray.iterations),
        viz.image_figure(result.reconstruction, f"decoded as {digit}"),
    ]


def other_routing_figures(result: Inference, ray: xray.RoutingXray, config, capsule: int = 500) -> list:
    """The other routing views' figures (votes and agreement, what routing adds) and the inspector's."""
    digit = result.predicted
    votes = ray.votes[:, digit]  # (N, D)
    basis = xray.vote_plane(votes, ray.poses[-1, digit])
    edges, counts = xray.histograms(ray.agreements[:, :, digit])
    report = xray.capsule_report(ray, capsule)
    return [
        viz_routing.votes_figure(
            xray.project(votes, basis),
            ray.vote_lengths[:, digit],
            ray.couplings[-1, :, digit],
            xray.project(ray.poses[:, digit], basis),
            digit=digit,
            iteration=ray.iterations,
            num_classes=config.num_classes,
        ),
        viz_routing.distributions_figure(
            edges, counts, iteration=ray.iterations, digit=digit, primary_lengths=ray.primary_lengths
        ),
        viz_routing.lengths_by_iteration_figure(ray.lengths, chosen=ray.iterations, predicted=digit),
        viz_routing.field_figure(ray.image, xray.receptive_field(config, report.row, report.col), "field"),
        viz_routing.capsule_figure(report.pose, report.vote_lengths),
        viz.coupling_tiles_spec(ray.couplings[-1, :, digit], digit, ray.iterations, selected=capsule),
    ]


def interaction_latency(model: CapsNet, *, repeat: int = 30, routing_iters: int = 3) -> dict:
    """Median seconds of each per-input operation, on the model's device (the app uses the CPU)."""
    device = next(model.parameters()).device
    x = to_mnist(canvas_drawing())  # (1, 28, 28)
    result = infer(model, x, routing_iters)
    ray = xray.xray(model, x).upto(routing_iters)
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
            "routing_xray": median_seconds(lambda: xray.xray(model, x), repeat, device=device),
            "figures": median_seconds(lambda: all_figures(result, ray, model.config), repeat, device=device),
            "routing_figures": median_seconds(
                lambda: other_routing_figures(result, ray, model.config), repeat, device=device
            ),
            "figure4_grid": median_seconds(
                lambda: perturb.grid_to_png(perturb.perturbation_grid(model, pose, result.predicted)),
                repeat,
                device=device,
            ),
        }
