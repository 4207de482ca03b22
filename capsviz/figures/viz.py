"""Plotly figure builders for the explorer: numpy arrays in, `go.Figure` out (and the JSON spec of
the coupling tiles, which the page draws itself: `coupling_tiles_spec`).

    from capsviz.figures import viz
    fig = viz.lengths_figure(lengths, predicted=3)   # lengths: (J,)

Every builder is a pure function; the UI only places the figures. Visual constants (colours,
sizes, heights) live at the top of this file so the whole app changes look in one place.
Builders stay fast on every rerun: one trace per heatmap, float32 data, no per-cell traces.

Every figure goes through `figure_of`, which fits its titles (`fit_titles`): the title, the
panel titles and the x-axis titles are wrapped to the narrowest chart the page draws, and the
title sits below a band left for Plotly's toolbar, which a touch screen always shows.

Shape letters are those of `capsviz.routing`: N = 1152 primary capsules, J = 10 digit
capsules, R routing iterations; primary capsules are type-major, n = type * G*G + row * G + col
with G = 6 the primary grid, so n reshapes to (32 types, 6, 6).
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import plotly.graph_objects as go

from capsviz.analysis import xray
from capsviz.losses import M_MINUS, M_PLUS
from capsviz.model import PAPER

# --- visual constants -------------------------------------------------------------------------

DIGIT_COLORS = (  # one per digit 0..9 (d3 category10: saturated, white text stays readable)
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
BAR_COLOR = "#a3b1c2"
HIGHLIGHT = "#e4572e"
MARGIN_UPPER = M_PLUS  # m+ of the margin loss
MARGIN_LOWER = M_MINUS  # m- of the margin loss
MARGINS = ((MARGIN_UPPER, "m+"), (MARGIN_LOWER, "m−"))
MARGIN_LINE_COLOR = "#888888"  # mid grey: readable on light and dark themes (contrast >= 3 on both)
REFERENCE_LINE_COLOR = "#888888"
DIVERGING = ((0.0, "#2166ac"), (0.5, "#f7f7f7"), (1.0, "#b2182b"))  # couplings: below uniform blue, above red
SELECTED_COLOR = "#111111"
IMAGE_COLORSCALE = ((0.0, "black"), (1.0, "white"))  # white ink on black, like MNIST
MAP_COLORSCALE = "Viridis"  # activations and lengths (sequential; couplings use their own diverging scale)
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
LABEL_MARGIN = 60  # px right of a plot whose line labels sit outside it
FIG_HEIGHT = 300
IMAGE_HEIGHT = 220
OVERLAY_HEIGHT = 380
MATRIX_HEIGHT = 520
LINE_WIDTH = 1.5
PREDICTED_LINE_WIDTH = 4.0

# --- room for the titles ----------------------------------------------------------------------

MODEBAR_ROOM = 34  # px above a figure's title: Plotly's toolbar (26 px tall), always shown on a touch screen
NARROWEST_CHART = 340  # px: the narrowest chart with a title (a phone's width, a presentation-mode column)
CHAR_WIDTH = 0.45  # em: a chart character's mean width, rounded up (0.41-0.43 measured on the page's font)
LINE_SPACING = 1.3  # em from one line of a chart's text to the next (Plotly's)
SUBTITLE_SCALE = 0.7  # a <sup> subtitle's size, of its title's (Plotly's)
TITLE_FONT = 16  # px: a figure's title (the page theme's size, made explicit so the wrapping knows it)
PANEL_TITLE_FONT = 14  # px: the title over one panel of a figure
AXIS_TITLE_FONT = 14  # px: the page theme's axis titles
TITLE_GAP = 6  # px between the titles and the plot
TICK_GAP = 10  # px between an axis's tick labels, its title and the plot
PLOTLY_TOP = 100  # px: Plotly's top margin where a layout names none
PANEL_TITLE = "panel title"  # the `name` of an annotation that titles one panel (`panel_title`)
CLAUSE_ENDS = (",", ";", ":")  # a line is best broken after one of these, or before a parenthesis
CAP_SHIFT = 0.7  # em: how far below its place Plotly draws a one-line title's baseline (a longer title: none)
SUBTITLED = re.compile(r"(.*?)<br><sup>(.*)</sup>", re.S)  # a title, then its subtitle on the next line

# --- layout of the primary capsules -----------------------------------------------------------

PRIMARY_GRID = PAPER.primary_grid  # G: each capsule type is a 6x6 grid of positions
TILE_COLS = 8  # 32 types -> 4 rows x 8 columns of 6x6 tiles


def base_layout(title: str, height: int, top: int | None = None, **extra) -> dict:
    """The layout every figure shares: compact margins, fixed height, a title.

    No template and no colours of the page: Streamlit's theme styles the charts (light or
    dark), and assigning a template costs about 20 ms a figure.
    """
    margin = {**MARGIN, "t": top if top is not None else (MARGIN["t"] if title else MARGIN["l"])}
    return {
        "margin": margin,
        "height": height,
        "title": {"text": title, "x": 0.02, "font": {"size": TITLE_FONT}},
        **extra,
    }


def wrap(text: str, chars: int) -> str:
    """Plain text broken with <br> at its spaces into lines of at most `chars` characters (a longer word keeps a
    line to itself), after a clause where one ends late enough. Breaks already in it are undone first, so text
    wrapped again at another width starts afresh."""
    lines: list[list[str]] = []
    for word in text.replace("<br>", " ").split(" "):
        if not word:
            continue
        if lines and len(" ".join([*lines[-1], word])) <= chars:
            lines[-1].append(word)
        elif lines:
            lines[-1:] = _broken(lines[-1], word, chars)
        else:
            lines.append([word])
    return "<br>".join(" ".join(line) for line in lines)


def _broken(line: list[str], word: str, chars: int) -> list[list[str]]:
    """A full line and the word that overflows it, as two lines: cut at the line's last clause boundary (after a
    word ending in , ; or :, or before a parenthesis) when that keeps a quarter of the width or more and the rest
    fits with `word`; else before `word`."""
    for k in range(len(line) - 1, 0, -1):
        head, tail = line[:k], [*line[k:], word]
        clause = head[-1].endswith(CLAUSE_ENDS) or tail[0].startswith("(")
        if clause and len(" ".join(head)) >= chars / 4 and len(" ".join(tail)) <= chars:
            return [head, tail]
    return [line, [word]]


def chars_across(width: float, size: float) -> int:
    """How many characters of a `size` px font fit across `width` px."""
    return max(int(width / (CHAR_WIDTH * size)), 1)


def wrap_title(text: str, size: float, width: float) -> tuple[str, int]:
    """A title, and its subtitle (after "<br><sup>") if it has one, wrapped to `width` px at `size` px, each
    subtitle line in its own <sup>: (the text, its number of lines)."""
    subtitled = SUBTITLED.fullmatch(text)
    main, sub = (subtitled[1], subtitled[2]) if subtitled else (text, None)
    lines = wrap(main, chars_across(width, size)).split("<br>")
    if sub is not None:
        sub = wrap(sub.replace("</sup><br><sup>", " "), chars_across(width, size * SUBTITLE_SCALE))
        lines += [f"<sup>{line}</sup>" for line in sub.split("<br>")]
    return "<br>".join(lines), len(lines)


def panel_title(text: str, domain: list[float], size: float = PANEL_TITLE_FONT) -> dict:
    """The title over the panel whose x axis spans `domain` of the figure's width, as make_subplots places it
    (a layout annotation; `fit_titles` wraps it to the panel's width)."""
    return {
        "text": text,
        "name": PANEL_TITLE,
        "x": sum(domain) / 2,
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": size},
    }


def _font_size(owner, default: float) -> float:
    font = owner.get("font") if isinstance(owner, dict) else None
    size = font.get("size") if isinstance(font, dict) else None
    return float(size) if isinstance(size, (int, float)) else default


def _x_axes(layout: dict) -> dict:
    return {key: axis for key, axis in layout.items() if re.fullmatch(r"xaxis\d*", key) and isinstance(axis, dict)}


def _span(axis: dict) -> float:
    """The share of the figure's width an x axis spans."""
    low, high = axis.get("domain") or (0.0, 1.0)
    return float(high) - float(low)


def _covers(axis: dict, x: float) -> bool:
    low, high = axis.get("domain") or (0.0, 1.0)
    return low <= x <= high


def _lines(text: str) -> int:
    return text.count("<br>") + 1


def fit_titles(layout: dict) -> dict:
    """`layout`, changed in place: its title, panel titles (`panel_title`) and x-axis titles wrapped to fit the
    narrowest chart at their font sizes, the title below the toolbar's band, and a top margin (and height: the
    plot keeps its size) that holds them. Fitting a fitted layout again, at larger fonts
    (capsviz.figures.projector), wraps it afresh."""
    room = 0.0  # px the titles need above the plot, under the toolbar's band
    title = layout.get("title")
    title = {"text": title} if isinstance(title, str) else title
    if isinstance(title, dict) and title.get("text"):
        size = _font_size(title, TITLE_FONT)
        text, lines = wrap_title(title["text"], size, NARROWEST_CHART * (1 - 2 * title.get("x", 0.02)))
        first_line = MODEBAR_ROOM + (CAP_SHIFT * size if lines > 1 else 0)  # level with a one-line title
        layout["title"] = {**title, "text": text, "y": 1, "yref": "container", "yanchor": "top",
                           "pad": {"t": round(first_line)}}  # fmt: skip
        room += lines * LINE_SPACING * size
    axes = _x_axes(layout)
    panels, tallest = [], 0.0
    for note in layout.get("annotations") or []:
        if isinstance(note, dict) and note.get("name") == PANEL_TITLE:
            size = _font_size(note, PANEL_TITLE_FONT)
            spans = [_span(a) for a in axes.values() if _covers(a, note["x"])] or [1.0]
            note = {**note, "text": wrap(note["text"], chars_across(spans[0] * NARROWEST_CHART, size))}
            tallest = max(tallest, _lines(note["text"]) * LINE_SPACING * size)
        panels.append(note)
    if panels:
        layout["annotations"] = panels
    for key, axis in axes.items():
        named = axis.get("title")
        named = {"text": named} if isinstance(named, str) else named
        if isinstance(named, dict) and named.get("text"):
            size = _font_size(named, AXIS_TITLE_FONT)
            text = wrap(named["text"], chars_across(_span(axis) * NARROWEST_CHART, size))
            layout[key] = {**axis, "title": {**named, "text": text}}
            if axis.get("side") == "top":  # between the figure's title and the plot
                tallest = max(tallest, _lines(text) * LINE_SPACING * size)
        if axis.get("side") == "top":
            room += LINE_SPACING * _font_size({"font": axis.get("tickfont")}, AXIS_TITLE_FONT) + TICK_GAP
    if room or tallest:
        margin = dict(layout.get("margin") or {})
        old = margin.get("t", PLOTLY_TOP)
        margin["t"] = max(old, math.ceil(MODEBAR_ROOM + room + tallest + TITLE_GAP))
        layout["margin"] = margin
        if isinstance(layout.get("height"), (int, float)):
            layout["height"] += margin["t"] - old
    return layout


VALIDATE_ENV = "CAPSVIZ_VALIDATE_FIGURES"  # "1": Plotly checks every property (the tests set it)


def figure_of(traces: list, layout: dict) -> go.Figure:
    """One constructor call, on the layout with its titles fitted (`fit_titles`). Plotly's property validation
    costs more than a figure's own arithmetic, so the app skips it (python -m capsviz.bench --sections app); the
    test suite turns it on for every figure."""
    return go.Figure(data=traces, layout=fit_titles(layout), _validate=os.environ.get(VALIDATE_ENV) == "1")


def image_axes(**extra) -> dict:
    """Image-like axes: y grows downwards, square pixels, no ticks or grid."""
    hidden = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "", **extra}
    return {
        "xaxis": {**hidden, "constrain": "domain"},
        "yaxis": {**hidden, "autorange": "reversed", "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
    }


def _hline(y: float, label: str, color: str, side: str = "right", axes: str = "") -> tuple[dict, dict]:
    """A dashed, labelled horizontal line across a subplot: (layout shape, layout annotation).

    side: where the label sits: "left" or "right" inside the plot, or "outside" to the right of it, in the
    margin, where no bar can be under it. axes: "" for the first subplot, "2" for the second.
    """
    xref, yref = f"x{axes} domain", f"y{axes}"
    shape = {
        "type": "line",
        "xref": xref,
        "yref": yref,
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"color": color, "width": 1, "dash": "dash"},
    }
    annotation = {
        "xref": xref,
        "yref": yref,
        "x": 0 if side == "left" else 1,
        "y": y,
        "text": label,
        "showarrow": False,
        "xanchor": "right" if side == "right" else "left",
        "yanchor": "middle" if side == "outside" else "bottom",
        "font": {"size": 10, "color": color},
    }
    return shape, annotation


def vline(x: float, color: str) -> dict:
    """A dotted vertical line over the whole plot height (a layout shape)."""
    line = {"color": color, "width": 1, "dash": "dot"}
    return {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1, "line": line}


def two_panels(titles: tuple[str, str], spacing: float) -> dict:
    """Layout of two side-by-side subplots (x/y and x2/y2), titled like make_subplots does."""
    width = (1.0 - spacing) / 2
    domains = ([0.0, width], [1.0 - width, 1.0])
    annotations = [panel_title(title, domain) for title, domain in zip(titles, domains)]
    return {
        "xaxis": {"domain": domains[0], "anchor": "y"},
        "yaxis": {"anchor": "x"},
        "xaxis2": {"domain": domains[1], "anchor": "y2"},
        "yaxis2": {"anchor": "x2"},
        "annotations": annotations,
    }


def _capsule_index(n: int, grid: int = PRIMARY_GRID) -> np.ndarray:
    """(N, 3) int array of (type, row, col) for type-major primary capsules n = type*G*G + row*G + col."""
    index = np.arange(n)
    return np.stack([index // grid**2, (index // grid) % grid, index % grid], axis=1)  # (N, 3)


def image_trace(image: np.ndarray) -> dict:
    return dict(
        type="heatmap",
        z=np.asarray(image, dtype=np.float32),  # (H, W)
        zmin=0.0,
        zmax=1.0,
        colorscale=IMAGE_COLORSCALE,
        showscale=False,
        hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>",
    )


def tile_grid(tiles: np.ndarray, columns: int) -> np.ndarray:
    """(T, h, w) tiles as one image, `columns` per row in reading order, one-pixel NaN gaps between them.

    A heatmap with hoverongaps=False shows the gaps as blank; tile i's centre column is
    `tile_centre(i % columns, w)` and its centre row `tile_centre(i // columns, h)`.
    """
    tiles = np.asarray(tiles, dtype=np.float32)  # (T, h, w)
    t, h, w = tiles.shape
    rows = math.ceil(t / columns)
    grid = np.full((rows, h + 1, columns, w + 1), np.nan, dtype=np.float32)  # each tile with its gap
    flat = np.full((rows * columns, h, w), np.nan, dtype=np.float32)
    flat[:t] = tiles
    grid[:, :h, :, :w] = flat.reshape(rows, columns, h, w).transpose(0, 2, 1, 3)  # (rows, h, columns, w)
    return grid.reshape(rows * (h + 1), columns * (w + 1))[:-1, :-1]  # (rows*(h+1) - 1, columns*(w+1) - 1)


def tile_centre(k: int, size: int) -> float:
    """The centre coordinate of the k-th tile of `size` pixels along one axis of a `tile_grid`."""
    return k * (size + 1) + (size - 1) / 2


def coupling_ticks(num_classes: int) -> tuple[list[float], list[str]]:
    """The coupling scale's ticks: its ends, uniform 1/J and the midpoints, with labels."""
    low, high = xray.coupling_range(num_classes)
    uniform = 1.0 / num_classes
    ticks = [low, (low + uniform) / 2, uniform, (uniform + high) / 2, high]
    return ticks, [f"{low:g}", f"{ticks[1]:g}", f"{uniform:g} = uniform", f"{ticks[3]:g}", f"≥ {high:g}"]


def coupling_colorbar(num_classes: int, title: str = "c_ij") -> dict:
    """The colour bar of every Plotly coupling view (the tiles draw theirs from `coupling_ticks`)."""
    ticks, text = coupling_ticks(num_classes)
    return {"thickness": 12, "len": 0.9, "tickvals": ticks, "ticktext": text, "title": {"text": title}}


def coupling_color(num_classes: int) -> dict:
    """Marker/heatmap colour settings for couplings: the diverging scale over the fixed range."""
    low, high = xray.coupling_range(num_classes)
    return {"colorscale": DIVERGING, "cmin": low, "cmax": high}


# --- figures ----------------------------------------------------------------------------------


def lengths_figure(lengths: np.ndarray, predicted: int | None = None) -> go.Figure:
    """Bar chart of the J digit-capsule lengths with the margin-loss thresholds m+ and m-."""
    lengths = np.asarray(lengths, dtype=np.float32)  # (J,)
    digits = np.arange(lengths.shape[0])
    colors = [HIGHLIGHT if d == predicted else BAR_COLOR for d in digits]
    bars = dict(
        type="bar",
        x=digits,
        y=lengths,
        marker={"color": colors},
        hovertemplate="digit %{x}<br>length %{y:.3f}<extra></extra>",
    )
    lines = [_hline(value, f"{label} = {value}", MARGIN_LINE_COLOR, side="outside") for value, label in MARGINS]
    title = "Digit capsule lengths" + (f" (predicted {predicted})" if predicted is not None else "")
    layout = base_layout(
        title,
        FIG_HEIGHT,
        xaxis={"tickmode": "array", "tickvals": digits, "title": {"text": "digit"}},
        yaxis={"range": [0.0, 1.0], "title": {"text": "capsule length"}},
        shapes=[shape for shape, _ in lines],
        annotations=[annotation for _, annotation in lines],
    )
    layout["margin"] = {**layout["margin"], "r": LABEL_MARGIN}  # the m+ and m- labels, beside the bars
    return figure_of([bars], layout)


def coupling_tiles_spec(
    couplings: np.ndarray, digit: int, iteration: int, *, num_classes: int = 10, selected: int | None = None
) -> dict:
    """What the page's tiles element (`capsviz.ui.tiles`) draws: the couplings (N,) of every primary
    capsule to parent `digit`, one tile of G x G per type, TILE_COLS tiles per row, one empty cell
    between tiles, so capsule n = t*36 + r*6 + c is cell (t//8 * 7 + r, t%8 * 7 + c).

    Colour: DIVERGING over the fixed range `xray.coupling_range`, centred on uniform 1/J, the same
    for every digit and iteration; values above the range show as its top. `selected` is outlined.
    Values that are not numbers (a diverged model) are sent as None and drawn grey. A Plotly heatmap
    cannot report a click; its layer of 1,152 clickable markers made a stroke's last chart arrive
    about 0.36 s later (docs/bench/tiles-2026-11-23.md), hence a canvas element.
    """
    values = np.asarray(couplings, dtype=np.float32).reshape(-1)  # (N,)
    g = PRIMARY_GRID
    low, high = xray.coupling_range(num_classes)
    ticks, labels = coupling_ticks(num_classes)
    return {
        "values": [round(float(v), 5) if np.isfinite(v) else None for v in values],
        "grid": g,
        "types": values.shape[0] // (g * g),
        "columns": TILE_COLS,
        "low": low,
        "high": high,
        "colors": [list(stop) for stop in DIVERGING],
        "ticks": ticks,
        "tick_labels": labels,
        "title": f"Couplings to digit {digit}, iteration {iteration}",
        "subtitle": f"white = uniform {1 / num_classes:g}; fixed scale {low:g}–{high:g}"
        + ("" if np.isfinite(values).all() else "; grey = not a number"),
        "scale_label": f"c_i{digit}: coupling of primary capsule i to digit {digit}",
        "selected": None if selected is None else int(selected),
        "selected_color": SELECTED_COLOR,
        "file_name": f"capsviz-couplings-digit{digit}-iteration{iteration}.png",
    }


def coupling_matrix_figure(couplings: np.ndarray, iteration: int | None = None) -> go.Figure:
    """The full (N, J) coupling matrix as one heatmap: x = digit, y = capsule index (0 at the top),
    on the same fixed diverging scale as every coupling view (`xray.coupling_range`)."""
    z = np.asarray(couplings, dtype=np.float32)  # (N, J)
    n, j = z.shape
    index = _capsule_index(n)  # (N, 3): type, row, col
    custom = np.ascontiguousarray(np.broadcast_to(index[:, None, :], (n, j, 3)))  # (N, 1, 3) -> (N, J, 3)
    low, high = xray.coupling_range(j)
    heatmap = dict(
        type="heatmap",
        z=z,
        x=np.arange(j),
        y=np.arange(n),
        customdata=custom,
        zmin=low,
        zmax=high,
        colorscale=DIVERGING,
        hovertemplate="capsule %{y} (type %{customdata[0]}, row %{customdata[1]}, "
        "col %{customdata[2]})<br>digit %{x}: %{z:.4f}<extra></extra>",
        colorbar=coupling_colorbar(j),
    )
    layout = base_layout(
        "Coupling coefficients c_ij" + (f", iteration {iteration}" if iteration else ""),
        MATRIX_HEIGHT,
        top=80,
        xaxis={"tickmode": "array", "tickvals": np.arange(j), "title": {"text": "digit capsule"}, "side": "top"},
        yaxis={"autorange": "reversed", "title": {"text": "primary capsule"}, "showgrid": False},
    )
    return figure_of([heatmap], layout)


def image_figure(image: np.ndarray, title: str = "") -> go.Figure:
    """A small greyscale (H, W) image in [0, 1]: white ink on black, no axes, no colour bar."""
    return figure_of([image_trace(image)], base_layout(title, IMAGE_HEIGHT, **image_axes(visible=False)))


def training_figure(
    losses: list[tuple[int, float]], test_accuracy: list[tuple[int, float]], batches_total: int
) -> go.Figure:
    """Live training curves: the loss per batch (left) and the test accuracy per epoch (right).

    losses: (global batch, loss) pairs; test_accuracy: (epoch, accuracy) pairs.
    """
    traces = []
    if losses:
        steps, values = np.asarray(losses, dtype=np.float32).T
        traces.append(dict(type="scattergl", x=steps, y=values, mode="lines", line={"color": BAR_COLOR}, name="loss"))
    if test_accuracy:
        epochs, accuracy = np.asarray(test_accuracy, dtype=np.float32).T
        traces.append(
            dict(
                type="scatter",
                x=epochs,
                y=accuracy,
                xaxis="x2",
                yaxis="y2",
                mode="lines+markers",
                line={"color": HIGHLIGHT},
                name="test accuracy",
            )
        )
    panels = two_panels(("loss", "test accuracy"), spacing=0.2)  # short: the panels are narrow on a phone
    panels["xaxis"].update(title={"text": "batch"}, range=[0, max(batches_total, 1)])
    panels["yaxis"].update(type="log")
    panels["xaxis2"].update(title={"text": "epoch"}, dtick=1)
    panels["yaxis2"].update(tickformat=".0%", range=[0.0, 1.0])  # accuracy spans 0-100%, never beyond
    return figure_of(traces, base_layout("", FIG_HEIGHT, top=30, showlegend=False, **panels))


PAPER_TEST_ERROR = 0.25  # %: the paper's MNIST test error with 3 routing iterations and 2-px shifts


def epoch_errors_figure(test_accuracy: list[float], run_start: int | None = None) -> go.Figure:
    """A card's test error after each epoch (%, axis from 0), the last (loaded) epoch marked, the paper's 0.25%.

    run_start: the first epoch of the last run, where it continued earlier ones: a dotted line before it.
    """
    errors = 100.0 * (1.0 - np.asarray(test_accuracy, dtype=np.float64))  # (E,)
    epochs = np.arange(1, errors.shape[0] + 1)
    curve = dict(
        type="scatter",
        x=epochs,
        y=errors,
        mode="lines+markers",
        marker={"size": 4, "color": BAR_COLOR},
        line={"color": BAR_COLOR, "width": LINE_WIDTH},
        hovertemplate="epoch %{x}<br>test error %{y:.2f}%<extra></extra>",
    )
    last = dict(
        type="scatter",
        x=epochs[-1:],
        y=errors[-1:],
        mode="markers",
        marker={"size": 9, "color": HIGHLIGHT},
        hovertemplate="epoch %{x}, the one loaded<br>test error %{y:.2f}%<extra></extra>",
    )
    paper = _hline(PAPER_TEST_ERROR, f"paper: {PAPER_TEST_ERROR}%", REFERENCE_LINE_COLOR, side="left")
    shapes, annotations = [paper[0]], [paper[1]]
    if run_start is not None:
        shapes.append(vline(run_start - 0.5, REFERENCE_LINE_COLOR))
        label = {
            "xref": "x",
            "yref": "paper",
            "x": run_start - 0.5,
            "y": 0,  # at the foot: the modebar covers the top
            "text": f"last run: {run_start}-{len(epochs)}",
            "showarrow": False,
            "xanchor": "left",
            "yanchor": "bottom",
            "font": {"size": 10, "color": REFERENCE_LINE_COLOR},
        }
        annotations.append(label)
    top = max(float(errors.max()), PAPER_TEST_ERROR) * 1.1
    layout = base_layout(
        "",
        IMAGE_HEIGHT,
        showlegend=False,
        xaxis={"title": {"text": "epoch"}, "range": [0.5, len(epochs) + 0.5]},
        yaxis={"title": {"text": "test error, %"}, "range": [0.0, top]},
        shapes=shapes,
        annotations=annotations,
    )
    return figure_of([curve, last], layout)


def digit_strip_figure(images: np.ndarray, lengths: np.ndarray, predicted: int | None = None) -> go.Figure:
    """(J, H, W) images side by side, one per digit, each labelled with its digit and capsule length.

    A one-pixel NaN gap separates the tiles; the predicted digit's label is bold.
    """
    images = np.asarray(images, dtype=np.float32)  # (J, H, W)
    j, h, w = images.shape
    strip = tile_grid(images, columns=j)  # (H, J*(W+1) - 1)
    centres = [tile_centre(d, w) for d in range(j)]
    labels = [f"<b>{d}</b>" if d == predicted else str(d) for d in range(j)]
    labels = [f"{label}<br>{float(lengths[d]):.2f}" for d, label in enumerate(labels)]
    trace = {**image_trace(strip), "hoverongaps": False}
    axes = image_axes()
    axes["xaxis"].update(showticklabels=True, tickmode="array", tickvals=centres, ticktext=labels, side="bottom")
    layout = base_layout("Decoded as each digit (label: capsule length)", IMAGE_HEIGHT, **axes)
    layout["margin"] = {**layout["margin"], "b": 40}
    return figure_of([trace], layout)


def tiles_figure(
    tiles: np.ndarray,
    title: str,
    *,
    columns: int = 8,
    colorscale=MAP_COLORSCALE,
    scale: tuple[float, float] | None = None,
    unit: str = "",
) -> go.Figure:
    """(T, h, w) small maps as one heatmap of T tiles, `columns` per row, NaN gaps between them.

    Each tile keeps its own values on one shared colour scale: `scale` (low, high) when given, the same
    for every input, else 0 to the largest value. `unit` titles the colour bar and the hover.
    """
    z = tile_grid(tiles, columns)  # (rows*(h+1) - 1, columns*(w+1) - 1)
    top = float(np.nanmax(z)) if np.isfinite(z).any() else 0.0
    low, high = scale if scale is not None else (0.0, max(top, 1e-6))
    heatmap = dict(
        type="heatmap",
        z=z,
        zmin=low,
        zmax=high,
        colorscale=colorscale,
        hoverongaps=False,
        hovertemplate=f"%{{z:.3f}}{' ' + unit if unit else ''}<extra></extra>",
        colorbar={"thickness": 12, "len": 0.9, **({"title": {"text": unit}} if unit else {})},
    )
    return figure_of([heatmap], base_layout(title, FIG_HEIGHT, **image_axes()))


def poses_figure(poses: np.ndarray, predicted: int | None = None) -> go.Figure:
    """(J, D) digit-capsule poses as a heatmap, one row per digit, diverging around 0."""
    poses = np.asarray(poses, dtype=np.float32)  # (J, D)
    bound = max(float(np.abs(poses).max()) if poses.size else 0.0, 1e-6)
    labels = [f"{j} ◀" if j == predicted else str(j) for j in range(poses.shape[0])]
    heatmap = dict(
        type="heatmap",
        z=poses,
        y=labels,
        zmin=-bound,
        zmax=bound,
        colorscale="RdBu",
        hovertemplate="digit %{y}, dim %{x}: %{z:.3f}<extra></extra>",
        colorbar={"thickness": 12, "len": 0.9},
    )
    layout = base_layout(
        f"Digit capsule poses (colour scale ±{bound:.2f})",
        FIG_HEIGHT,
        xaxis={"title": {"text": "pose dimension"}, "dtick": 1},
        yaxis={"autorange": "reversed", "title": {"text": "digit"}, "type": "category"},
    )
    return figure_of([heatmap], layout)
