"""Figures of the Two digits view: the pair and each digit's reconstruction, the two-digit scores, and where
routing sends each position's coupling (capsviz.analysis.two_digits)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from capsviz.figures.viz import BAR_COLOR, FIG_HEIGHT, base_layout, figure_of, image_axes, two_panels

COLOURS = ("#d62728", "#1f77b4")  # the first named digit red, the second blue, in every figure of the view
PAIR_HEIGHT = 260
MAP_HEIGHT = 260


def _rgb(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def reconstruction_colours(reconstructions: np.ndarray) -> np.ndarray:
    """(2, H, W) in [0, 1] -> (H, W, 3) uint8: the first digit's reconstruction in red, the second's in blue
    (where both draw, magenta)."""
    first, second = reconstructions
    return _rgb(np.stack([first, np.zeros_like(first), second], axis=-1))


def pair_figure(x: np.ndarray, reconstructions: np.ndarray, named: tuple[int, int]) -> go.Figure:
    """The input (H, W) beside its two reconstructions, each decoded from its own capsule (the paper's Figure 5)."""
    grey = _rgb(np.repeat(x[..., None], 3, axis=-1))
    traces = [
        dict(type="image", z=grey, hoverinfo="skip"),
        dict(type="image", z=reconstruction_colours(reconstructions), xaxis="x2", yaxis="y2", hoverinfo="skip"),
    ]
    titles = ("Input", f"Reconstructed: {named[0]} red, {named[1]} blue")
    layout = base_layout("", PAIR_HEIGHT, top=30, **two_panels(titles, spacing=0.06))
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2"):
        layout[axis] = {**layout[axis], **image_axes(visible=False)[axis[0] + "axis"]}
    layout["yaxis2"]["scaleanchor"] = "x2"
    return figure_of(traces, layout)


def scores_figure(scores: np.ndarray, named: tuple[int, int], title: str, unit: str) -> go.Figure:
    """Bars of the J scores on a fixed 0..1 axis, the two named digits in their colours."""
    digits = np.arange(len(scores))
    colours = [COLOURS[named.index(d)] if d in named else BAR_COLOR for d in digits]
    bars = dict(
        type="bar",
        x=digits,
        y=np.asarray(scores, dtype=np.float32),
        marker={"color": colours},
        hovertemplate=f"digit %{{x}}<br>{unit} %{{y:.3f}}<extra></extra>",
    )
    layout = base_layout(
        title,
        FIG_HEIGHT,
        xaxis={"tickmode": "array", "tickvals": digits, "title": {"text": "digit"}},
        yaxis={"range": [0.0, 1.0], "title": {"text": unit}},
    )
    return figure_of([bars], layout)


def coupling_figure(share: np.ndarray, named: tuple[int, int]) -> go.Figure:
    """share (R, 2, G, G) -> one map per iteration of c(first) - c(second) at each position, in percentage
    points, on one symmetric scale spanning the largest difference of any iteration (said on the colour bar)."""
    difference = (share[:, 0] - share[:, 1]) * 100  # (R, G, G) points of coupling
    span = max(float(np.abs(difference).max()), 1e-3)
    iterations = difference.shape[0]
    width = 1.0 / iterations
    traces, layout = [], base_layout("", MAP_HEIGHT, top=30)
    scale = ((0.0, COLOURS[1]), (0.5, "#f7f7f7"), (1.0, COLOURS[0]))
    for r in range(iterations):
        suffix = "" if r == 0 else str(r + 1)
        traces.append(
            dict(
                type="heatmap",
                z=difference[r],
                zmin=-span,
                zmax=span,
                colorscale=scale,
                showscale=r == iterations - 1,
                colorbar={"title": {"text": f"c({named[0]}) − c({named[1]}),<br>points"}, "len": 0.9},
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
                hovertemplate="row %{y}, col %{x}: %{z:+.3f} points<extra></extra>",
            )
        )
        axes = image_axes(visible=False)
        domain = [r * width + 0.01, (r + 1) * width - 0.01]
        layout[f"xaxis{suffix}"] = {**axes["xaxis"], "domain": domain, "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {**axes["yaxis"], "anchor": f"x{suffix}", "scaleanchor": f"x{suffix}"}
        layout.setdefault("annotations", []).append(
            {"text": f"iteration {r + 1}", "x": sum(domain) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
             "xanchor": "center", "yanchor": "bottom", "showarrow": False}
        )  # fmt: skip
    return figure_of(traces, layout)
