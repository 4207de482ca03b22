"""Plotly figures of the routing X-ray (`capsviz.analysis.xray`): arrays in, `go.Figure` out, nothing else.

    fig = viz_routing.split_overlay_figure(image, xray.position_split(couplings, 6), centres, iteration=3)

Couplings always use one diverging scale centred on uniform (1/J), over the same fixed range
for every digit and iteration (`coupling_scale`); values beyond it show at its end colour and
the colour bar says so. Shape letters are those of `capsviz.analysis.xray`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from capsviz.analysis import xray
from capsviz.figures.viz import (
    BAR_COLOR,
    DIGIT_COLORS,
    FIG_HEIGHT,
    HIGHLIGHT,
    LINE_WIDTH,
    OVERLAY_HEIGHT,
    PREDICTED_LINE_WIDTH,
    base_layout,
    coupling_color,
    coupling_colorbar,
    figure_of,
    image_axes,
    image_trace,
    two_panels,
)

# --- visual constants -------------------------------------------------------------------------

DOT_MIN, DOT_MAX = 3.0, 14.0  # px: uniform couplings, and the position furthest from uniform in this figure
TIE_COLOR = "#888888"  # readable on light and dark themes
TIE_SYMBOL = "circle-open"  # a ring: a tie reads apart from every digit's colour (7's is a grey too)
SPLIT_OPACITY = 0.9
VOTE_SIZE_MAX = 16.0  # px, the longest vote of this digit
VOTE_SIZE_MIN = 2.0
VOTES_HEIGHT = 420
PARENT_COLOR = "#111111"
PARENT_SIZE = 18
FIELD_COLOR = HIGHLIGHT
SMALL_HEIGHT = 240


# --- the input with one split of the 10 couplings per grid position ---------------------------


def departure(split: np.ndarray) -> np.ndarray:
    """(P, J) mean couplings per position -> (P,) their distance from uniform: the share of the coupling that
    would have to move to make them all 1/J (total variation; 0 uniform, at most 1 - 1/J)."""
    return 0.5 * np.abs(split - 1.0 / split.shape[1]).sum(axis=1)


def split_overlay_figure(image: np.ndarray, split: np.ndarray, centres: np.ndarray, *, iteration: int) -> go.Figure:
    """The input, and at each primary-grid position's field centre a dot: its size says how far the position's
    couplings (averaged over the capsule types there) are from uniform, on a scale the title states; its colour
    the digit they favour (the legend names each), an open grey ring where two digits tie. split: (G*G, J) from
    `xray.position_split`.

    centres: (G*G, 2) field centres (x, y) in input pixels, from `xray.field_centres`.
    """
    split = np.asarray(split, dtype=np.float64)
    cells, j = split.shape
    g = int(round(np.sqrt(cells)))
    rows, cols = np.divmod(np.arange(cells), g)  # (G*G,) each
    moved = departure(split)  # (G*G,)
    span = float(moved.max())
    scaled = span > xray.TIE_TOLERANCE  # float32 sums leave ~1e-9 where nothing moved: that is not a scale
    winners = [xray.winner(row) for row in split]
    verdict = [f"favours digit {w}" if w is not None else "no winner (tie)" for w in winners]
    colours = [DIGIT_COLORS[w % len(DIGIT_COLORS)] if w is not None else TIE_COLOR for w in winners]
    size = DOT_MIN + (DOT_MAX - DOT_MIN) * (moved / span if scaled else np.zeros(cells))  # (G*G,)
    dots = dict(
        type="scatter",
        mode="markers",
        x=np.asarray(centres, dtype=np.float64)[:, 0],
        y=np.asarray(centres, dtype=np.float64)[:, 1],
        marker={
            "size": size,
            "color": colours,
            "symbol": [TIE_SYMBOL if w is None else "circle" for w in winners],
            "line": {"width": 1, "color": "white"},
            "opacity": SPLIT_OPACITY,
        },
        customdata=np.stack([rows, cols, moved], axis=1).astype(np.float32),  # (G*G, 3)
        text=verdict,
        hovertemplate="position (row %{customdata[0]}, col %{customdata[1]})<br>%{text}<br>"
        "coupling moved off uniform: %{customdata[2]:.4f}<extra></extra>",
        showlegend=False,
    )
    ties = sum(w is None for w in winners)
    sizes = f"dot size: 0 to {span:.4f} moved (of at most {1 - 1 / j:.1f})" if scaled else "no position moved"
    layout = base_layout(
        f"Couplings against uniform, iteration {iteration}<br><sup>{sizes}; {ties}/{cells} tied (open rings)</sup>",
        OVERLAY_HEIGHT,
        top=70,
        showlegend=True,
        legend={"orientation": "h", "x": 0, "y": 0, "yanchor": "top", "title": {"text": "favours"}},
        **image_axes(),
    )
    return figure_of([image_trace(image), dots, *_favour_keys(winners)], layout)


def _favour_keys(winners: list) -> list[dict]:
    """Legend entries, no points: the colour of each digit some position favours, then the tie's ring."""
    favoured = sorted({w for w in winners if w is not None})
    keys = [(str(d), DIGIT_COLORS[d % len(DIGIT_COLORS)], "circle") for d in favoured]
    keys += [("tie", TIE_COLOR, TIE_SYMBOL)] if None in winners else []
    return [
        dict(
            type="scatter",
            x=[None],
            y=[None],
            mode="markers",
            name=name,
            hoverinfo="skip",
            marker={"color": colour, "symbol": symbol, "size": 10},
        )
        for name, colour, symbol in keys
    ]


# --- lengths after 1..R iterations ------------------------------------------------------------


def lengths_by_iteration_figure(lengths: np.ndarray, *, chosen: int, predicted: int | None = None) -> go.Figure:
    """(R, J) lengths of this input's digit capsules after 1..R iterations; `chosen`, dotted, is the count the
    page's "Routing iterations at inference" runs."""
    lengths = np.asarray(lengths, dtype=np.float32)
    iters = np.arange(1, lengths.shape[0] + 1)
    traces = [
        dict(
            type="scatter",
            x=iters,
            y=lengths[:, d],
            mode="lines+markers",
            name=str(d),
            line={
                "color": DIGIT_COLORS[d % len(DIGIT_COLORS)],
                "width": PREDICTED_LINE_WIDTH if d == predicted else LINE_WIDTH,
            },
            marker={"size": 5},
            hovertemplate=f"digit {d} after %{{x}} iteration(s): length %{{y:.3f}}<extra></extra>",
        )
        for d in range(lengths.shape[1])
    ]
    shape = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": chosen,
        "x1": chosen,
        "y0": 0,
        "y1": 1,
        "line": {"color": BAR_COLOR, "width": 1, "dash": "dot"},
    }
    layout = base_layout(
        f"Capsule lengths after 1–{lengths.shape[0]} iterations"
        f"<br><sup>this input; dotted line: {chosen}, the routing iterations the prediction uses</sup>",
        FIG_HEIGHT + 60,
        top=60,
        xaxis={"title": {"text": "routing iterations"}, "tickmode": "array", "tickvals": iters},
        yaxis={"range": [0.0, 1.0], "title": {"text": "capsule length"}},
        shapes=[shape],
        legend={"title": {"text": "digit"}, "font": {"size": 10}},
    )
    return figure_of(traces, layout)


# --- votes and agreement ----------------------------------------------------------------------


def votes_figure(
    points: np.ndarray,
    vote_lengths: np.ndarray,
    couplings: np.ndarray,
    parents: np.ndarray,
    *,
    digit: int,
    iteration: int,
    num_classes: int,
) -> go.Figure:
    """The N votes for one digit in a fixed plane: size = |u_hat|, colour = c_ij at `iteration`;
    the parent v_j after iterations 1..R as a path, the current one as a star.

    points: (N, 2) projected votes; vote_lengths, couplings: (N,); parents: (R, 2) projected v_j.
    The axis ranges cover every iteration, so stepping through them never moves the axes.
    """
    points = np.asarray(points, dtype=np.float32)
    parents = np.asarray(parents, dtype=np.float32)
    lengths = np.asarray(vote_lengths, dtype=np.float32)
    top = float(lengths.max()) if lengths.size and lengths.max() > 0 else 1.0
    sizes = np.maximum(VOTE_SIZE_MAX * lengths / top, VOTE_SIZE_MIN)  # (N,)
    index = np.arange(points.shape[0])
    votes = dict(
        type="scatter",
        x=points[:, 0],
        y=points[:, 1],
        mode="markers",
        marker={
            "size": sizes,
            "color": np.asarray(couplings, dtype=np.float32),
            **coupling_color(num_classes),
            "colorbar": coupling_colorbar(num_classes, f"c_i{digit}"),
            "line": {"width": 0},
            "opacity": 0.8,
        },
        customdata=np.stack([index, lengths, couplings], axis=1),
        hovertemplate="primary capsule %{customdata[0]}<br>|u_hat| %{customdata[1]:.3f}, "
        "coupling %{customdata[2]:.4f}<extra></extra>",
        showlegend=False,
    )
    everything = np.concatenate([points, parents], axis=0)
    low, high = everything.min(axis=0), everything.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-6)
    layout = base_layout(
        f"Votes û for digit {digit}, iteration {iteration}"
        f"<br><sup>star: v_{digit}; size: |û|; colour: c_i{digit}</sup>",
        VOTES_HEIGHT,
        top=70,
        xaxis={
            "range": [float(low[0] - pad[0]), float(high[0] + pad[0])],
            "title": {"text": f"along final v_{digit} (û·v / |v|)"},
            "zeroline": True,
        },
        yaxis={
            "range": [float(low[1] - pad[1]), float(high[1] + pad[1])],
            "title": {"text": "largest spread across it"},
            "zeroline": True,
        },
    )
    return figure_of([votes, _parent_path(parents, digit=digit, iteration=iteration)], layout)


def _parent_path(parents: np.ndarray, *, digit: int, iteration: int) -> dict:
    """v_j after iterations 1..`iteration` of parents (R, 2) as a dotted path, numbered, the last a star."""
    return dict(
        type="scatter",
        x=parents[:iteration, 0],
        y=parents[:iteration, 1],
        mode="lines+markers+text",
        text=[str(r) for r in range(1, iteration + 1)],
        textposition="top center",
        line={"color": PARENT_COLOR, "width": 1, "dash": "dot"},
        marker={
            "symbol": ["circle"] * (iteration - 1) + ["star"],
            "size": [7] * (iteration - 1) + [PARENT_SIZE],
            "color": PARENT_COLOR,
        },
        hovertemplate=f"v_{digit} after iteration %{{text}}<extra></extra>",
        showlegend=False,
    )


def distributions_figure(
    edges: np.ndarray, counts: np.ndarray, *, iteration: int, digit: int, primary_lengths: np.ndarray
) -> go.Figure:
    """Left: histograms of the agreements û·v_digit, one line per iteration (shared bins), the
    current one bold. Right: the primary capsule lengths |u_i| on fixed bins over [0, 1]."""
    edges = np.asarray(edges, dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    traces = []
    for r, row in enumerate(np.asarray(counts), start=1):
        traces.append(
            dict(
                type="scatter",
                x=centres,
                y=row,
                mode="lines",
                line={
                    "shape": "hvh",
                    "width": 2.5 if r == iteration else 1,
                    "color": HIGHLIGHT if r == iteration else BAR_COLOR,
                },
                name=f"iteration {r}",
                hovertemplate=f"iteration {r}: %{{y}} votes near %{{x:.3f}}<extra></extra>",
                showlegend=False,
            )
        )
    lengths = np.asarray(primary_lengths, dtype=np.float64)
    length_counts, length_edges = np.histogram(lengths, bins=20, range=(0.0, 1.0))
    traces.append(
        dict(
            type="bar",
            x=(length_edges[:-1] + length_edges[1:]) / 2,
            y=length_counts,
            width=0.05,
            xaxis="x2",
            yaxis="y2",
            marker={"color": BAR_COLOR},
            hovertemplate="%{y} capsules of length %{x:.3f} ± 0.025<extra></extra>",
            showlegend=False,
        )
    )
    above = float((lengths > 0.5).mean()) if lengths.size else 0.0
    panels = two_panels(
        (f"Agreement û·v_{digit}, iterations 1–{len(counts)} (bold: {iteration})", f"|u_i|: {above:.1%} above 0.5"),
        spacing=0.14,
    )
    panels["xaxis"].update(title={"text": "agreement (added to b_ij)"})
    panels["yaxis"].update(title={"text": "votes"})
    panels["xaxis2"].update(title={"text": "primary capsule length"}, range=[0.0, 1.0])
    panels["yaxis2"].update(title={"text": "capsules"})
    return figure_of(traces, base_layout("", FIG_HEIGHT, top=40, **panels))


# --- one primary capsule ----------------------------------------------------------------------


def field_figure(image: np.ndarray, field: xray.Field, title: str) -> go.Figure:
    """The input with the capsule's receptive field outlined (pixel edges, inclusive)."""
    shape = {
        "type": "rect",
        "x0": field.left - 0.5,
        "x1": field.left + field.size - 0.5,
        "y0": field.top - 0.5,
        "y1": field.top + field.size - 0.5,
        "line": {"color": FIELD_COLOR, "width": 3},
    }
    layout = base_layout(title, SMALL_HEIGHT, shapes=[shape], **image_axes())
    return figure_of([image_trace(image)], layout)


def capsule_figure(pose: np.ndarray, vote_lengths: np.ndarray) -> go.Figure:
    """Left: the capsule's I-D pose. Right: the lengths of its J votes |û_j|i|."""
    pose = np.asarray(pose, dtype=np.float32)
    votes = np.asarray(vote_lengths, dtype=np.float32)
    traces = [
        dict(type="bar", x=np.arange(pose.size), y=pose, marker={"color": BAR_COLOR},
             hovertemplate="dimension %{x}: %{y:.3f}<extra></extra>", showlegend=False),
        dict(type="bar", x=np.arange(votes.size), y=votes, xaxis="x2", yaxis="y2",
             marker={"color": [DIGIT_COLORS[d % len(DIGIT_COLORS)] for d in range(votes.size)]},
             hovertemplate="vote for digit %{x}: length %{y:.3f}<extra></extra>", showlegend=False),
    ]  # fmt: skip
    panels = two_panels((f"{pose.size}-D pose u_i", "vote lengths |û_j|i|"), spacing=0.15)
    panels["xaxis"].update(title={"text": "dimension"}, dtick=1)
    panels["xaxis2"].update(title={"text": "digit"}, dtick=1)
    panels["yaxis"].update(range=[-1.0, 1.0])
    return figure_of(traces, base_layout("", SMALL_HEIGHT, top=30, **panels))
