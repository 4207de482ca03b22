"""Plotly figures for a projector: every text in a figure at least a given size (the app's presentation mode).

    big = projected(fig, minimum=16)    # a go.Figure (or its dict) -> a new go.Figure

Streamlit's chart theme gives ticks, legends, hover labels and colour bars small sizes of their
own, which a figure's `layout.font` does not override: each of those fonts is set here
explicitly, and every font the figure already names is raised to the minimum (never lowered).
Titles get a few pixels more, and a figure with a fixed height grows to make room; its titles are
wrapped again for their larger size (`viz.figure_of` fits them: `viz.fit_titles`).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import plotly.graph_objects as go

from capsviz.figures.viz import figure_of

FONT_KEYS = ("font", "tickfont", "textfont", "insidetextfont", "outsidetextfont")
TITLE_EXTRA = 5  # px above the minimum for a figure's own title: its <sup> subtitle (70%) stays above 14 px
HEIGHT_GROWTH = 1.25  # larger text needs a taller figure
SCALED_TRACES = ("heatmap", "contour", "histogram2d", "histogram2dcontour")  # a colour bar unless showscale=False
AXIS = re.compile(r"[xy]axis\d*|coloraxis\d*")


def _larger(size, minimum: int):
    """A font size (a number, a per-point list, or absent) raised to at least `minimum`."""
    if isinstance(size, (list, tuple, np.ndarray)):
        return [max(float(s), minimum) for s in size]
    return minimum if not isinstance(size, (int, float)) else max(size, minimum)


def _at_least(font: dict, minimum: int) -> None:
    font["size"] = _larger(font.get("size"), minimum)


def _raise_named(node, minimum: int) -> None:
    """Every font the figure already names, anywhere in it (annotations, traces, titles), raised in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in FONT_KEYS and isinstance(value, dict):
                _at_least(value, minimum)
            else:
                _raise_named(value, minimum)
    elif isinstance(node, list):
        for value in node:
            _raise_named(value, minimum)


def _title_font(owner: dict) -> dict:
    """The font of owner's title, made explicit (a bare string title becomes {"text": ...})."""
    title = owner.get("title")
    owner["title"] = title = {"text": title} if isinstance(title, str) else (title or {})
    return title.setdefault("font", {})


def _colorbar(owner: dict, minimum: int) -> None:
    bar = owner.setdefault("colorbar", {})
    _at_least(bar.setdefault("tickfont", {}), minimum)
    _at_least(_title_font(bar), minimum)


def _has_colorbar(owner: dict, *, shown_by_default: bool) -> bool:
    return "colorbar" in owner or bool(owner.get("showscale", shown_by_default))


def projected(figure: go.Figure | dict, *, minimum: int) -> go.Figure:
    """A copy of `figure` (a go.Figure or its plotly JSON dict) whose every text is at least `minimum` px.

    A go.Figure, not a dict: Streamlit validates a dict property by property (about ten times the
    cost of the figure itself), but takes a figure as it is."""
    spec = copy.deepcopy(figure) if isinstance(figure, dict) else figure.to_dict()  # to_dict copies
    layout = spec.setdefault("layout", {})
    _raise_named(spec, minimum)
    _at_least(layout.setdefault("font", {}), minimum)
    if layout.get("title"):
        _at_least(_title_font(layout), minimum + TITLE_EXTRA)
    for key in [k for k in layout if AXIS.fullmatch(k)] or ["xaxis", "yaxis"]:
        axis = layout.setdefault(key, {})
        if key.startswith("coloraxis"):
            _colorbar(axis, minimum)
            continue
        _at_least(axis.setdefault("tickfont", {}), minimum)
        _at_least(_title_font(axis), minimum)
    legend = layout.setdefault("legend", {})
    _at_least(legend.setdefault("font", {}), minimum)
    if legend.get("title"):
        _at_least(_title_font(legend), minimum)
    _at_least(layout.setdefault("hoverlabel", {}).setdefault("font", {}), minimum)
    for trace in spec.get("data", []):
        if _has_colorbar(trace, shown_by_default=trace.get("type") in SCALED_TRACES):
            _colorbar(trace, minimum)
        if isinstance(trace.get("marker"), dict) and _has_colorbar(trace["marker"], shown_by_default=False):
            _colorbar(trace["marker"], minimum)
    if isinstance(layout.get("height"), (int, float)):
        layout["height"] = round(layout["height"] * HEIGHT_GROWTH)
    return figure_of(spec.get("data", []), layout)
