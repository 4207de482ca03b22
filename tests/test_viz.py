import json
import os
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from capsviz.figures import viz, viz_lab, viz_two

N, J, R = 1152, 10, 3


def uniform_couplings(r: int = R) -> np.ndarray:
    return np.full((r, N, J), 1.0 / J, dtype=np.float32)


def one_hot_couplings(digit: int) -> np.ndarray:
    out = np.zeros((N, J), dtype=np.float32)
    out[:, digit] = 1.0
    return out


def z_of(trace) -> np.ndarray:
    z = np.asarray(trace.z)
    assert z.dtype.kind == "f", z.dtype  # numeric, never object
    return z


def assert_finite(fig: go.Figure) -> None:
    for trace in fig.data:
        for name in ("x", "y", "z"):
            values = getattr(trace, name, None)
            if values is not None and np.asarray(values).dtype.kind in "fiu":
                assert np.isfinite(np.asarray(values, dtype=np.float64)).all(), (trace.type, name)


# --- lengths_figure ---------------------------------------------------------------------------


def test_lengths_figure_highlights_the_prediction_and_draws_the_margins():
    lengths = np.linspace(0.05, 0.95, 10).astype(np.float32)
    fig = viz.lengths_figure(lengths, predicted=7)
    (bar,) = [t for t in fig.data if t.type == "bar"]
    np.testing.assert_allclose(bar.y, lengths)
    assert list(bar.x) == list(range(10))
    colors = list(bar.marker.color)
    assert colors[7] == viz.HIGHLIGHT
    assert all(c == viz.BAR_COLOR for i, c in enumerate(colors) if i != 7)
    lines = sorted(s.y0 for s in fig.layout.shapes if s.y0 == s.y1)
    assert lines == pytest.approx([viz.MARGIN_LOWER, viz.MARGIN_UPPER])
    assert all(s.line.dash == "dash" for s in fig.layout.shapes)
    labels = " ".join(a.text for a in fig.layout.annotations)
    assert "m+" in labels and "m−" in labels
    assert tuple(fig.layout.yaxis.range) == (0.0, 1.0)
    assert "%{y:.3f}" in bar.hovertemplate


def test_margin_labels_sit_beside_the_plot_never_over_the_winning_bar():
    """With 9 winning, the m+ and m- labels were painted over its bar at the right end of the plot."""
    lengths = np.full(10, 0.05, dtype=np.float32)
    lengths[9] = 0.95
    fig = viz.lengths_figure(lengths, predicted=9)
    for label in fig.layout.annotations:
        assert label.xref == "x domain" and label.x == 1 and label.xanchor == "left"  # starts where the plot ends
    assert fig.layout.margin.r >= 50  # with room for "m+ = 0.9" in the margin


def test_lengths_figure_without_prediction_has_no_highlight():
    fig = viz.lengths_figure(np.full(10, 0.5))
    assert viz.HIGHLIGHT not in list(fig.data[0].marker.color)


# --- coupling_tiles_spec ----------------------------------------------------------------------


def test_tiles_spec_sends_every_capsule_in_type_major_order_with_its_title():
    couplings = np.linspace(0, 0.2, N).astype(np.float32)
    spec = viz.coupling_tiles_spec(couplings, digit=4, iteration=2, selected=5 * 36 + 3 * 6 + 4)
    assert len(spec["values"]) == N and spec["values"][77] == pytest.approx(couplings[77], abs=1e-5)
    assert (spec["grid"], spec["types"], spec["columns"]) == (6, 32, 8)  # capsule n = type*36 + row*6 + col
    assert spec["selected"] == 5 * 36 + 3 * 6 + 4
    assert spec["title"] == "Couplings to digit 4, iteration 2" and "c_i4" in spec["scale_label"]
    assert spec["file_name"].endswith(".png") and "digit4" in spec["file_name"]
    assert viz.coupling_tiles_spec(couplings, 0, 1)["selected"] is None
    json.dumps(spec, allow_nan=False)  # what the page receives: plain JSON
    couplings[3] = np.nan  # a diverged model: no NaN reaches the page's JSON.parse
    spec = viz.coupling_tiles_spec(couplings, digit=4, iteration=2)
    assert spec["values"][3] is None and "grey = not a number" in spec["subtitle"]
    json.dumps(spec, allow_nan=False)


def test_tiles_colour_scale_is_diverging_centred_on_uniform_and_fixed():
    for values in (np.full(N, 0.2, dtype=np.float32), np.zeros(N), np.full(N, 0.9)):
        spec = viz.coupling_tiles_spec(values, 0, 1)
        assert (spec["low"], spec["high"]) == (0.0, pytest.approx(0.2))  # never the data's own maximum
        assert [stop[0] for stop in spec["colors"]] == [0.0, 0.5, 1.0]  # the scale's centre is uniform, 1/10
    ticks = {round(v, 6): label for v, label in zip(spec["ticks"], spec["tick_labels"])}
    assert ticks[0.1] == "0.1 = uniform" and ticks[0.2] == "≥ 0.2"
    assert "uniform 0.1" in spec["subtitle"] and "0–0.2" in spec["subtitle"]
    assert viz.coupling_tiles_spec(np.zeros(N), 0, 1, num_classes=5)["high"] == pytest.approx(0.4)


# --- coupling_matrix_figure and image_figure ---------------------------------------------------


def test_coupling_matrix_is_one_heatmap_with_capsule_hover():
    couplings = np.random.default_rng(1).dirichlet(np.ones(J), size=N).astype(np.float32)
    fig = viz.coupling_matrix_figure(couplings)
    assert len(fig.data) == 1
    z = z_of(fig.data[0])
    assert z.shape == (N, J) and z.dtype == np.float32
    np.testing.assert_array_equal(z, couplings)
    custom = np.asarray(fig.data[0].customdata)
    n = 5 * 36 + 3 * 6 + 4
    assert list(custom[n, 9]) == [5, 3, 4]
    assert fig.data[0].y[n] == n and "capsule %{y}" in fig.data[0].hovertemplate


def test_image_figure_is_a_fixed_range_greyscale_without_axes():
    image = np.random.default_rng(2).random((28, 28))
    fig = viz.image_figure(image, title="input")
    heat = fig.data[0]
    assert z_of(heat).shape == (28, 28)
    assert (heat.zmin, heat.zmax) == (0.0, 1.0)
    assert heat.showscale is False
    assert fig.layout.xaxis.visible is False and fig.layout.yaxis.visible is False
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "input"


# --- shared properties ------------------------------------------------------------------------


@pytest.fixture
def all_figures():
    rng = np.random.default_rng(3)
    couplings = rng.dirichlet(np.ones(J), size=(R, N)).astype(np.float32)
    lengths = rng.random((R, J)).astype(np.float32)
    return {
        "lengths": viz.lengths_figure(lengths[-1], predicted=1),
        "matrix": viz.coupling_matrix_figure(couplings[-1]),
        "image": viz.image_figure(rng.random((28, 28))),
        "epochs": viz.epoch_errors_figure([0.9895, 0.9908, 0.9955]),
    }


def test_all_figures_share_layout_and_have_no_stray_nans(all_figures):
    for name, fig in all_figures.items():
        assert fig.layout.height, name
        assert fig.layout.margin.l == viz.MARGIN["l"] and fig.layout.paper_bgcolor is None, name  # the theme's colours
        for trace in fig.data:
            if trace.type == "heatmap":
                z_of(trace)
                assert trace.showscale is not False or name not in ("tiles", "matrix"), name
        if name != "tiles":
            assert_finite(fig)
    for name in ("lengths", "image"):
        assert all(t.showscale is False for t in all_figures[name].data if t.type == "heatmap"), name


def test_figures_serialise_to_json(all_figures):
    for fig in all_figures.values():
        assert fig.to_json()


def test_training_figure_plots_losses_and_accuracy():
    fig = viz.training_figure([(1, 0.8), (2, 0.5), (3, 0.3)], [(1, 0.97)], batches_total=10)
    loss, accuracy = fig.data
    assert list(loss.y) == pytest.approx([0.8, 0.5, 0.3]) and list(accuracy.y) == pytest.approx([0.97])
    assert viz.training_figure([], [], 0).data == ()


def _luminance(hex_colour: str) -> float:
    """WCAG relative luminance of #rrggbb."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("background", ["#ffffff", "#0e1117"])  # Streamlit's light and dark backgrounds
def test_margin_labels_read_on_light_and_dark_themes(background):
    fig = viz.lengths_figure(np.linspace(0, 1, 10), predicted=9)
    colours = {a.font.color for a in fig.layout.annotations}
    assert colours == {viz.MARGIN_LINE_COLOR}
    assert _contrast(viz.MARGIN_LINE_COLOR, background) >= 3.0


def test_training_accuracy_axis_spans_0_to_100_percent():
    fig = viz.training_figure([(1, 0.8)], [(1, 0.089)], batches_total=10)
    assert tuple(fig.layout.yaxis2.range) == (0.0, 1.0) and fig.layout.yaxis2.tickformat == ".0%"


def test_epoch_errors_are_percent_from_zero_with_the_last_epoch_marked():
    fig = viz.epoch_errors_figure([0.9895, 0.9908, 0.9955])
    curve, shipped = fig.data
    assert list(curve.x) == [1, 2, 3] and list(curve.y) == pytest.approx([1.05, 0.92, 0.45])
    assert list(shipped.x) == [3] and list(shipped.y) == pytest.approx([0.45])
    assert fig.layout.yaxis.range[0] == 0.0 and fig.layout.yaxis.range[1] >= 1.05  # every point on the axis
    assert fig.layout.shapes[0].y0 == viz.PAPER_TEST_ERROR and "paper" in fig.layout.annotations[0].text


def test_epoch_errors_mark_where_the_last_run_began():
    fig = viz.epoch_errors_figure([0.98, 0.99, 0.991, 0.992], run_start=3)
    line, label = fig.layout.shapes[1], fig.layout.annotations[1]
    assert line.x0 == line.x1 == 2.5 and (line.y0, line.y1) == (0, 1) and line.yref == "paper"
    assert label.x == 2.5 and label.text == "last run: 3-4"
    assert len(viz.epoch_errors_figure([0.98, 0.99]).layout.shapes) == 1  # one run: only the paper's line


def test_tiles_figure_lays_tiles_out_with_gaps():
    tiles = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)
    z = np.asarray(viz.tiles_figure(tiles, "t", columns=2).data[0].z)
    assert z.shape == (2 * 3 - 1, 2 * 3 - 1)
    assert np.array_equal(z[0:2, 3:5], tiles[1]) and np.array_equal(z[3:5, 0:2], tiles[2])
    assert np.isnan(z[2]).all() and np.isnan(z[3:5, 3:5]).all()


def test_tile_grid_puts_tiles_in_reading_order_and_its_centres_on_them():
    tiles = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)  # (T=3, h=2, w=3)
    z = viz.tile_grid(tiles, columns=2)
    assert z.shape == (2 * 3 - 1, 2 * 4 - 1)
    assert np.array_equal(z[0:2, 0:3], tiles[0]) and np.array_equal(z[0:2, 4:7], tiles[1])
    assert np.array_equal(z[3:5, 0:3], tiles[2]) and np.isnan(z[3:5, 4:7]).all()  # no 4th tile: blank
    assert np.isnan(z[2]).all() and np.isnan(z[:, 3]).all()  # the gaps
    assert [viz.tile_centre(k, 3) for k in range(2)] == [np.mean([0, 1, 2]), np.mean([4, 5, 6])]


def test_the_lab_strip_labels_sit_on_their_rows_and_columns():
    inputs, decoded = np.zeros((3, 4, 5)), np.ones((3, 4, 5))
    fig = viz_lab.strip_figure(inputs, decoded, np.array([-1.0, 0.0, 1.0]), label="shift")
    z = np.asarray(fig.data[0].z)
    rows = [np.flatnonzero((z == value).any(axis=1)).mean() for value in (0.0, 1.0)]
    assert list(fig.layout.yaxis.tickvals) == rows and list(fig.layout.yaxis.ticktext) == ["input", "decoded"]
    columns = [np.flatnonzero(~np.isnan(z[0]))[5 * k : 5 * k + 5].mean() for k in range(3)]
    assert list(fig.layout.xaxis.tickvals) == columns and list(fig.layout.xaxis.ticktext) == ["-1", "0", "1"]


def test_poses_figure_is_symmetric_around_zero():
    fig = viz.poses_figure(np.array([[0.2, -0.5], [0.1, 0.0]]), predicted=1)
    assert fig.data[0].zmin == -0.5 and fig.data[0].zmax == 0.5 and "±0.50" in fig.layout.title.text


def test_figures_skip_plotly_validation_in_the_app_and_the_tests_turn_it_on(monkeypatch):
    assert os.environ.get(viz.VALIDATE_ENV) == "1"  # conftest: the suite checks every figure
    with pytest.raises(ValueError, match="Invalid property"):
        viz.figure_of([{"type": "bar", "y": [1], "notaproperty": 1}], {})
    monkeypatch.delenv(viz.VALIDATE_ENV)
    viz.figure_of([{"type": "bar", "y": [1], "notaproperty": 1}], {})  # the app's path: no check


# --- titles: wrapped to the narrowest chart, under the toolbar ----------------------------------


def drawn_lines(text: str) -> list[str]:
    """The lines a chart draws of a text: split at its breaks, without tags."""
    return [re.sub(r"</?\w+>", "", line) for line in text.split("<br>")]


def test_wrap_breaks_between_words_after_a_clause_and_wraps_afresh():
    assert viz.wrap("CapsNet: 9 red, 7 blue", 18) == "CapsNet: 9 red,<br>7 blue"  # not "... 7<br>blue"
    assert viz.wrap("Digit capsule lengths (predicted 9)", 34) == "Digit capsule lengths<br>(predicted 9)"
    assert viz.wrap("Couplings against uniform, iteration 3", 40) == "Couplings against uniform, iteration 3"
    narrow = viz.wrap("Couplings against uniform, iteration 3", 12)
    assert viz.wrap(narrow, 40) == "Couplings against uniform, iteration 3"  # its breaks undone first
    assert viz.wrap("averyveryverylongword x", 5) == "averyveryverylongword<br>x"  # never inside a word


def test_a_title_wraps_under_the_toolbar_and_the_plot_keeps_its_height():
    """On a phone the toolbar covered the end of a title, and a long subtitle ran off the chart."""
    title = (
        "Couplings against uniform, iteration 3"
        "<br><sup>dot size: 0 to 0.0050 moved (of at most 0.9); 0/36 tied (open rings)</sup>"
    )
    fig = viz.figure_of([], viz.base_layout(title, 380, top=70))
    shown = fig.layout.title
    assert shown.text == (
        "Couplings against uniform, iteration 3"
        "<br><sup>dot size: 0 to 0.0050 moved (of at most 0.9); 0/36 tied</sup><br><sup>(open rings)</sup>"
    )
    assert (shown.yref, shown.y, shown.yanchor) == ("container", 1, "top") and shown.pad.t >= viz.MODEBAR_ROOM
    lines = len(drawn_lines(shown.text))
    assert fig.layout.margin.t >= viz.MODEBAR_ROOM + lines * viz.LINE_SPACING * viz.TITLE_FONT
    assert fig.layout.height - fig.layout.margin.t == 380 - 70  # the plot as high as before
    assert viz.figure_of([], fig.layout.to_plotly_json()).layout.title.text == shown.text  # fitting twice: the same


def test_the_two_digit_panels_titles_wrap_to_their_width_under_the_toolbar():
    """Three panels side by side on a phone: "CapsNet: 9 red, 7 blue" ran into "Without routing: 9 red, 7 blue"."""
    image = np.zeros((36, 36, 3), dtype=np.uint8)
    fig = viz_two.pair_figure(
        [("Input", image), ("CapsNet: 9 red, 7 blue", image), ("Without routing: 9 red, 7 blue", image)]
    )
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["Input", "CapsNet: 9 red,<br>7 blue", "Without routing:<br>9 red, 7 blue"]
    size = fig.layout.annotations[1].font.size
    for note, axis in zip(fig.layout.annotations, ("xaxis", "xaxis2", "xaxis3"), strict=True):
        low, high = fig.layout[axis].domain
        width = (high - low) * viz.NARROWEST_CHART
        assert all(len(line) * viz.CHAR_WIDTH * size <= width for line in drawn_lines(note.text)), note.text
    assert fig.layout.margin.t >= viz.MODEBAR_ROOM + 2 * viz.LINE_SPACING * size
