"""Plotly figure builders for the Claims lab: numpy arrays in, `go.Figure` out (see `capsviz.analysis.lab`).

CapsNet's score is a capsule length and the CNN's a softmax probability: both lie in 0..1 but
they are different quantities (lengths need not sum to 1), so every chart names which is which.
Shape letters: J = 10 classes, N sweep points, D = 16 pose dimensions.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from capsviz.figures.viz import (
    BAR_COLOR,
    HIGHLIGHT,
    base_layout,
    figure_of,
    image_axes,
    image_trace,
    tile_centre,
    tile_grid,
    vline,
)

CAPSNET_COLOR = "#1f77b4"
CNN_COLOR = "#ff7f0e"
CURRENT_COLOR = HIGHLIGHT
CAPSNET_NAME = "CapsNet: capsule length"
CNN_NAME = "CNN: softmax probability"
SCORES_HEIGHT = 300
SWEEP_HEIGHT = 320
POSE_HEIGHT = 320
STRIP_HEIGHT = 250
PAIR_HEIGHT = 200
SCORE_AXIS = {"range": [0, 1.02], "title": {"text": "score, 0 to 1"}, "fixedrange": True}
LEGEND = {"orientation": "h", "x": 0, "y": -0.3, "xanchor": "left", "yanchor": "top"}
BOTTOM = 90  # px under the plot: axis title and the legend


def scores_figure(capsnet: np.ndarray, cnn: np.ndarray | None) -> go.Figure:
    """Both models' scores per digit, side by side: CapsNet lengths (J,), CNN softmax (J,) or None."""
    digits = np.arange(len(capsnet))
    traces = [_bars(digits, capsnet, CAPSNET_NAME, CAPSNET_COLOR)]
    if cnn is not None:
        traces.append(_bars(digits, cnn, CNN_NAME, CNN_COLOR))
    layout = base_layout("Each model's score per digit", SCORES_HEIGHT, barmode="group", showlegend=True, legend=LEGEND)
    layout.update(
        xaxis={"tickmode": "array", "tickvals": digits, "title": {"text": "digit"}, "fixedrange": True},
        yaxis=SCORE_AXIS,
    )
    layout["margin"] = {**layout["margin"], "l": 50, "b": BOTTOM}
    return figure_of(traces, layout)


def _bars(digits: np.ndarray, scores: np.ndarray, name: str, color: str) -> dict:
    return dict(
        type="bar",
        x=digits,
        y=np.asarray(scores, dtype=np.float32),  # (J,)
        name=name,
        marker={"color": color},
        hovertemplate=f"{name}<br>digit %{{x}}: %{{y:.3f}}<extra></extra>",
    )


def sweep_figure(
    values: np.ndarray,
    capsnet: np.ndarray,
    cnn: np.ndarray | None,
    *,
    digit: int,
    label: str,
    current: float,
    current_scores: tuple[float, float | None],
) -> go.Figure:
    """Each model's score for `digit` along a sweep (N,), the current setting marked with its own scores."""
    traces = [_line(values, capsnet, CAPSNET_NAME, CAPSNET_COLOR)]
    if cnn is not None:
        traces.append(_line(values, cnn, CNN_NAME, CNN_COLOR))
    at = [(CAPSNET_NAME, current_scores[0])] + ([(CNN_NAME, current_scores[1])] if cnn is not None else [])
    traces.append(
        dict(
            type="scatter",
            mode="markers",
            x=[current] * len(at),
            y=[score for _, score in at],
            name="current setting",
            marker={"color": CURRENT_COLOR, "size": 13, "symbol": "diamond", "line": {"width": 1, "color": "white"}},
            customdata=[name for name, _ in at],
            hovertemplate="current setting %{x:g}<br>%{customdata}: %{y:.3f}<extra></extra>",
        )
    )
    layout = base_layout(f"Score for digit {digit} along the sweep", SWEEP_HEIGHT, showlegend=True, legend=LEGEND)
    layout.update(xaxis={"title": {"text": label}, "fixedrange": True}, yaxis=SCORE_AXIS)
    layout["shapes"] = [vline(current, CURRENT_COLOR)]
    layout["margin"] = {**layout["margin"], "l": 50, "b": BOTTOM}
    return figure_of(traces, layout)


def _line(values: np.ndarray, scores: np.ndarray, name: str, color: str) -> dict:
    return dict(
        type="scatter",
        mode="lines+markers",
        x=np.asarray(values, dtype=np.float32),  # (N,)
        y=np.asarray(scores, dtype=np.float32),  # (N,)
        name=name,
        line={"color": color, "width": 2},
        marker={"size": 5},
        hovertemplate=f"{name}<br>%{{x:g}}: %{{y:.3f}}<extra></extra>",
    )


def widest_dimension(poses: np.ndarray) -> int:
    """The pose dimension (of (N, D) along a sweep) whose value ranges the most: the one the page names."""
    return int((poses.max(0) - poses.min(0)).argmax())


def pose_sweep_figure(values: np.ndarray, poses: np.ndarray, *, digit: int, label: str, current: float) -> go.Figure:
    """Capsule `digit`'s D pose components (N, D) along the sweep, one line per dimension: the one that moves the
    most in colour and labelled at its end, the others in grey (16 colours would repeat and say nothing)."""
    poses = np.asarray(poses, dtype=np.float32)  # (N, D)
    x = np.asarray(values, dtype=np.float32)
    widest = widest_dimension(poses)
    order = [d for d in range(poses.shape[1]) if d != widest] + [widest]  # the named one drawn last, on top
    traces = [
        dict(
            type="scatter",
            mode="lines",
            x=x,
            y=poses[:, d],
            name=f"dim {d}",
            line={"width": 3 if d == widest else 1, "color": CAPSNET_COLOR if d == widest else BAR_COLOR},
            hovertemplate=f"dim {d}<br>%{{x:g}}: %{{y:.3f}}<extra></extra>",
        )
        for d in order
    ]
    layout = base_layout(f"Capsule {digit}'s {poses.shape[1]} pose dimensions", POSE_HEIGHT)
    layout.update(
        showlegend=False,
        xaxis={"title": {"text": label}, "fixedrange": True},
        yaxis={"title": {"text": "pose component"}, "fixedrange": True},
    )
    layout["shapes"] = [vline(current, CURRENT_COLOR)]
    layout["annotations"] = [
        {"x": float(x[-1]), "y": float(poses[-1, widest]), "text": f"dim {widest}", "showarrow": False,
         "xanchor": "left", "font": {"color": CAPSNET_COLOR}}
    ]  # fmt: skip
    layout["margin"] = {**layout["margin"], "l": 60, "b": 50, "r": 50}
    return figure_of(traces, layout)


def pair_figure(before: np.ndarray, after: np.ndarray) -> go.Figure:
    """The input (H, W) and its transformed version (H, W) side by side in one chart, a one-pixel gap between."""
    w = before.shape[1]
    pair = tile_grid(np.stack([before, after]), columns=2)  # (H, 2W + 1)
    axes = image_axes()
    axes["xaxis"].update(
        showticklabels=True, tickmode="array", tickvals=[tile_centre(0, w), tile_centre(1, w)], side="top",
        ticktext=["input", "transformed"],
    )  # fmt: skip
    layout = base_layout("", PAIR_HEIGHT, **axes)
    layout["margin"] = {**layout["margin"], "t": 30}
    return figure_of([{**image_trace(pair), "hoverongaps": False}], layout)


def strip_figure(inputs: np.ndarray, reconstructions: np.ndarray, values: np.ndarray, *, label: str) -> go.Figure:
    """Two rows of N tiles: the moved inputs (N, H, W) over their reconstructions (N, H, W), labelled by value."""
    inputs = np.asarray(inputs, dtype=np.float32)
    n, h, w = inputs.shape
    strip = tile_grid(np.concatenate([inputs, np.clip(reconstructions, 0, 1)]), columns=n)  # (2H + 1, N*(W+1) - 1)
    axes = image_axes()
    centres = [tile_centre(i, w) for i in range(n)]
    axes["xaxis"].update(
        showticklabels=True, tickmode="array", tickvals=centres, ticktext=[f"{v:g}" for v in values], side="bottom",
        title={"text": label},
    )  # fmt: skip
    rows = [tile_centre(0, h), tile_centre(1, h)]
    axes["yaxis"].update(showticklabels=True, tickmode="array", tickvals=rows, ticktext=["input", "decoded"])
    layout = base_layout("Moved inputs (top), decoded (below)", STRIP_HEIGHT, **axes)
    layout["margin"] = {**layout["margin"], "b": 50, "l": 60}
    return figure_of([{**image_trace(strip), "hoverongaps": False}], layout)
