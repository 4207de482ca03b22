"""capsviz.figures.projector: every text of a projected figure is at least the minimum, and nothing is lowered."""

from __future__ import annotations

import re

import numpy as np
import pytest

from capsviz.analysis import xray
from capsviz.figures import projector, viz, viz_lab, viz_routing
from capsviz.model import PAPER

MINIMUM = 16


def font_sizes(node, inside: str = "") -> list[float]:
    """Every font size in a figure's JSON: the `size` of any dict held under a key ending in "font"."""
    found = []
    if isinstance(node, dict):
        if inside.endswith("font") and "size" in node:
            size = node["size"]
            found.extend(size if isinstance(size, list) else [size])
        for key, value in node.items():
            found.extend(font_sizes(value, key))
    elif isinstance(node, list):
        for value in node:
            found.extend(font_sizes(value, inside))
    return found


def test_a_hand_made_figure_gets_every_font_raised_and_none_lowered():
    figure = {
        "data": [
            {"type": "bar", "textfont": {"size": [10, 18]}},
            {"type": "heatmap", "z": [[0, 1]]},  # a colour bar by default
            {"type": "heatmap", "z": [[0, 1]], "showscale": False},
        ],
        "layout": {
            "title": {"text": "lengths", "font": {"size": 24}},
            "annotations": [{"text": "m+", "font": {"size": 10}}],
            "xaxis2": {"title": "digit"},
            "legend": {"title": {"text": "digit"}},
            "height": 300,
        },
    }
    spec = projector.projected(figure, minimum=14).to_dict()
    assert spec["data"][0]["textfont"]["size"] == [14, 18]
    assert spec["layout"]["title"]["font"]["size"] == 24  # already larger: kept
    assert spec["layout"]["annotations"][0]["font"]["size"] == 14
    assert spec["layout"]["xaxis2"]["title"] == {"text": "digit", "font": {"size": 14}}
    assert spec["layout"]["xaxis2"]["tickfont"]["size"] == 14
    assert spec["layout"]["font"]["size"] == spec["layout"]["legend"]["font"]["size"] == 14
    assert spec["layout"]["legend"]["title"]["font"]["size"] == 14
    assert spec["data"][1]["colorbar"]["tickfont"]["size"] == 14
    assert "colorbar" not in spec["data"][2]
    assert spec["layout"]["height"] == 375
    assert figure["layout"]["annotations"][0]["font"]["size"] == 10  # the original is untouched
    assert "font" not in figure["layout"]


def test_an_untitled_figure_gets_no_title():
    spec = projector.projected({"data": [], "layout": {}}, minimum=14).to_dict()
    assert "title" not in spec["layout"] and spec["layout"]["xaxis"]["tickfont"]["size"] == 14


def _app_figures():
    rng = np.random.default_rng(0)
    lengths = rng.random(10).astype(np.float32)
    couplings = rng.dirichlet(np.ones(10), size=1152).astype(np.float32)  # (N, J)
    image = rng.random((28, 28)).astype(np.float32)
    values = np.linspace(-45, 45, 9)
    yield viz.lengths_figure(lengths, 3)
    yield viz.image_figure(image, "model input")
    yield viz.digit_strip_figure(rng.random((10, 28, 28)), lengths, 3)
    yield viz.coupling_matrix_figure(couplings, 2)
    centres = xray.field_centres(PAPER)
    yield viz_routing.split_overlay_figure(image, xray.position_split(couplings, 6), centres, iteration=2)
    yield viz_routing.lengths_by_iteration_figure(rng.random((5, 10)), chosen=3, predicted=3)
    yield viz_lab.sweep_figure(values, rng.random(9), rng.random(9), digit=3, label="rotation", current=0.0,
                               current_scores=(0.5, 0.5))  # fmt: skip
    yield viz_lab.pose_sweep_figure(values, rng.random((9, 16)), digit=3, label="rotation", current=0.0)


@pytest.mark.parametrize("figure", list(_app_figures()), ids=lambda f: f.layout.title.text or "untitled")
def test_the_apps_figures_projected_have_no_text_under_the_minimum(figure):
    spec = projector.projected(figure, minimum=MINIMUM).to_dict()
    sizes = font_sizes(spec)
    assert sizes and min(sizes) >= MINIMUM
    for name, axis in spec["layout"].items():
        if name[1:].startswith("axis"):  # xaxis, yaxis2, ...: the theme's tick font is overridden
            assert axis["tickfont"]["size"] >= MINIMUM, name


def said(text: str) -> str:
    """What a chart text says: its words, whatever its line breaks and subtitle tags."""
    return " ".join(re.sub(r"<br>|</?sup>", " ", text).split())


def drawn(text: str, size: float) -> list[tuple[str, float]]:
    """Each line a chart draws of a text, with its font size (a <sup> line at Plotly's 70%)."""
    return [
        (re.sub(r"</?sup>", "", line), size * viz.SUBTITLE_SCALE if line.startswith("<sup>") else size)
        for line in text.split("<br>")
    ]


def _texts(layout: dict):
    """(text, font size, width in px at the narrowest chart) of the title, the panel titles and the x-axis titles."""
    if layout.get("title", {}).get("text"):
        title = layout["title"]
        yield title["text"], title["font"]["size"], viz.NARROWEST_CHART * (1 - 2 * title["x"])
    for note in layout.get("annotations", []):
        if note.get("name") == viz.PANEL_TITLE:
            span = next(a["domain"] for k, a in layout.items() if k.startswith("xaxis") and
                        a.get("domain", [0, 1])[0] <= note["x"] <= a.get("domain", [0, 1])[1])  # fmt: skip
            yield note["text"], note["font"]["size"], (span[1] - span[0]) * viz.NARROWEST_CHART
    for name, axis in layout.items():
        if name.startswith("xaxis") and axis.get("title", {}).get("text"):
            low, high = axis.get("domain", [0, 1])
            yield axis["title"]["text"], axis["title"]["font"]["size"], (high - low) * viz.NARROWEST_CHART


@pytest.mark.parametrize("figure", list(_app_figures()), ids=lambda f: f.layout.title.text or "untitled")
def test_the_apps_figures_projected_wrap_their_titles_to_a_phones_width_and_say_the_same(figure):
    """At projector size the overlay's subtitle ran off the chart ("...0/36 tied (g"), and a title ran under the
    toolbar ("Digit capsule lengths (predicte[toolbar]d 9)")."""
    spec = projector.projected(figure, minimum=MINIMUM).to_dict()
    layout = spec["layout"]
    for text, size, width in _texts(layout):
        for line, line_size in drawn(text, size):
            assert len(line) * viz.CHAR_WIDTH * line_size <= width or " " not in line, (line, width)
    if figure.layout.title.text:
        assert said(layout["title"]["text"]) == said(figure.layout.title.text)  # the same words
        assert layout["title"]["pad"]["t"] >= viz.MODEBAR_ROOM and layout["title"]["yanchor"] == "top"
        lines = len(layout["title"]["text"].split("<br>"))
        assert layout["margin"]["t"] >= viz.MODEBAR_ROOM + lines * viz.LINE_SPACING * layout["title"]["font"]["size"]


def test_the_overlays_title_and_subtitle_wrap_at_projector_size():
    image = np.zeros((28, 28), dtype=np.float32)
    split = np.full((36, 10), 0.1)
    figure = viz_routing.split_overlay_figure(image, split, xray.field_centres(PAPER), iteration=3)
    title = projector.projected(figure, minimum=MINIMUM).layout.title
    assert title.text == (
        "Couplings against uniform,<br>iteration 3<br><sup>no position moved; 36/36 tied (open rings)</sup>"
    )
    assert title.font.size == MINIMUM + projector.TITLE_EXTRA
    assert title.pad.t > viz.MODEBAR_ROOM  # a title of several lines is drawn from its first baseline
