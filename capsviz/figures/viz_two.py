"""Figures of the Two digits view: the pair and each digit's reconstruction, the two-digit scores, and where
routing sends each position's coupling (capsviz.analysis.two_digits)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from capsviz.figures.viz import BAR_COLOR, FIG_HEIGHT, base_layout, figure_of, image_axes, panel_title

COLOURS = ("#d62728", "#1f77b4")  # the first named digit red, the second blue, in every figure of the view
PAIR_HEIGHT = 260
MAP_HEIGHT = 260
PANEL_FONT = 12  # px: three or four panels side by side, each titled


def _rgb(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)


def reconstruction_colours(reconstructions: np.ndarray) -> np.ndarray:
    """(K >= 2, H, W) in [0, 1] -> (H, W, 3) uint8: the first two reconstructions, the first in red, the second in
    blue (where both draw, magenta)."""
    first, second = reconstructions[0], reconstructions[1]
    return _rgb(np.stack([first, np.zeros_like(first), second], axis=-1))


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8."""
    return _rgb(np.repeat(image[..., None], 3, axis=-1))


def pair_figure(panels: list[tuple[str, np.ndarray]]) -> go.Figure:
    """Images side by side, each (title, (H, W, 3) uint8): the input and the reconstructions (the paper's Figure 5)."""
    traces, layout = [], base_layout("", PAIR_HEIGHT, top=30)
    width = 1.0 / len(panels)
    for k, (title, image) in enumerate(panels):
        suffix = "" if k == 0 else str(k + 1)
        traces.append(dict(type="image", z=image, xaxis=f"x{suffix}", yaxis=f"y{suffix}", hoverinfo="skip"))
        _panel(layout, suffix, [k * width + 0.02, (k + 1) * width - 0.02], title)
    return figure_of(traces, layout)


def _panel(layout: dict, suffix: str, domain: list[float], title: str) -> None:
    """An image-like subplot in `domain` of the width, titled above."""
    axes = image_axes(visible=False)
    layout[f"xaxis{suffix}"] = {**axes["xaxis"], "domain": domain, "anchor": f"y{suffix}"}
    layout[f"yaxis{suffix}"] = {**axes["yaxis"], "anchor": f"x{suffix}", "scaleanchor": f"x{suffix}"}
    layout.setdefault("annotations", []).append(panel_title(title, domain, PANEL_FONT))


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


def coupling_span(share: np.ndarray) -> float:
    """share (R, 2, G, G) -> the largest |c(first) - c(second)| of any iteration and position, in points: the
    colour scale's end (at least 0.001, so that a uniform map still has a scale)."""
    return max(float(np.abs(share[:, 0] - share[:, 1]).max()) * 100, 1e-3)


def coupling_figure(share: np.ndarray, named: tuple[int, int]) -> go.Figure:
    """share (R, 2, G, G) -> one map per iteration of c(first) - c(second) at each position, in percentage
    points, on one symmetric scale spanning the largest difference of any iteration (said on the colour bar)."""
    difference = (share[:, 0] - share[:, 1]) * 100  # (R, G, G) points of coupling
    span = coupling_span(share)
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
                colorbar={
                    "title": {"text": f"c({named[0]}) − c({named[1]}),<br>points"},
                    "len": 0.9,
                    "tickvals": [-span, 0.0, span],
                    "ticktext": [f"{-span:+.2f}", "0", f"{span:+.2f}"],
                },
                xaxis=f"x{suffix}",
                yaxis=f"y{suffix}",
                hovertemplate="row %{y}, col %{x}: %{z:+.3f} points<extra></extra>",
            )
        )
        _panel(layout, suffix, [r * width + 0.01, (r + 1) * width - 0.01], f"iteration {r + 1}")
    return figure_of(traces, layout)
