"""capsviz.figures.viz_routing: the routing X-ray figures show exactly the numbers they are given."""

from __future__ import annotations

import re

import numpy as np
import pytest

from capsviz.analysis import xray
from capsviz.figures import viz, viz_routing
from capsviz.model import CapsNetConfig

G, J = 6, 10
CENTRES = xray.field_centres(CapsNetConfig())


def said(text: str) -> str:
    """A chart text as read: its line breaks (`viz.wrap`) and subtitle tags as spaces."""
    return " ".join(re.sub(r"<br>|</?sup>", " ", text).split())


def test_field_centres_are_the_receptive_field_centres():
    assert CENTRES.shape == (36, 2)
    np.testing.assert_array_equal(CENTRES[0], [8, 8])  # field 0..16
    np.testing.assert_array_equal(CENTRES[6 * 2 + 5], [18, 12])  # row 2, col 5: x = 2*5 + 8, y = 2*2 + 8


def test_split_overlay_of_uniform_couplings_is_small_grey_dots_and_no_winner():
    fig = viz_routing.split_overlay_figure(np.zeros((28, 28)), np.full((G * G, J), 0.1), CENTRES, iteration=1)
    heat, dots, tie = fig.data
    assert heat.type == "heatmap" and dots.type == "scatter"
    assert tie.name == "tie" and tie.marker.symbol == viz_routing.TIE_SYMBOL  # the legend names the open ring
    np.testing.assert_allclose(np.asarray(dots.x, dtype=float), CENTRES[:, 0])  # at each field's centre
    np.testing.assert_allclose(np.asarray(dots.y, dtype=float), CENTRES[:, 1])
    np.testing.assert_allclose(np.asarray(dots.marker.size, dtype=float), viz_routing.DOT_MIN)  # nothing moved
    assert set(dots.marker.color) == {viz_routing.TIE_COLOR} and all(t == "no winner (tie)" for t in dots.text)
    assert set(dots.marker.symbol) == {viz_routing.TIE_SYMBOL}
    assert "36/36 tied" in fig.layout.title.text and "no position moved" in fig.layout.title.text


def test_split_overlay_of_float_noise_is_no_scale():
    split = np.full((G * G, J), 0.1)
    split[5, 2] += 3e-9  # what float32 averaging leaves at iteration 1, where nothing moved
    split[5, 3] -= 3e-9
    fig = viz_routing.split_overlay_figure(np.zeros((28, 28)), split, CENTRES, iteration=1)
    np.testing.assert_allclose(np.asarray(fig.data[1].marker.size, dtype=float), viz_routing.DOT_MIN)
    assert "no position moved" in fig.layout.title.text


def test_split_overlay_sizes_each_position_by_its_distance_from_uniform():
    split = np.full((G * G, J), 0.1)
    split[7] = 0.0
    split[7, 3] = 1.0  # position (1, 1) goes wholly to digit 3: 0.9 of its coupling moved
    split[8, 3], split[8, 4] = 0.15, 0.05  # position (1, 2) leans to 3: 0.05 moved
    fig = viz_routing.split_overlay_figure(np.zeros((28, 28)), split, CENTRES, iteration=3)
    dots = fig.data[1]
    np.testing.assert_allclose(viz_routing.departure(split)[[0, 7, 8]], [0.0, 0.9, 0.05])
    sizes = np.asarray(dots.marker.size, dtype=float)
    assert sizes[7] == pytest.approx(viz_routing.DOT_MAX) and sizes[0] == pytest.approx(viz_routing.DOT_MIN)
    assert sizes[8] == pytest.approx(viz_routing.DOT_MIN + (viz_routing.DOT_MAX - viz_routing.DOT_MIN) * 0.05 / 0.9)
    assert dots.marker.color[7] == viz.DIGIT_COLORS[3] and dots.text[7] == "favours digit 3"
    assert [t.name for t in fig.data[2:]] == ["3", "tie"]  # the legend: each favoured digit's colour, then ties
    assert fig.data[2].marker.color == viz.DIGIT_COLORS[3]
    assert "34/36 tied" in fig.layout.title.text and "0 to 0.9000 moved" in fig.layout.title.text
    assert list(dots.customdata[7][:2]) == [1, 1]  # a click on it picks row 1, column 1


def test_votes_figure_axes_do_not_move_between_iterations():
    rng = np.random.default_rng(0)
    points, parents = rng.normal(size=(1152, 2)), rng.normal(size=(3, 2)) * 3
    lengths, couplings = rng.random(1152), rng.random(1152) * 0.2
    figs = [
        viz_routing.votes_figure(points, lengths, couplings, parents, digit=4, iteration=r, num_classes=J)
        for r in (1, 2, 3)
    ]
    assert (
        len({tuple(f.layout.xaxis.range) for f in figs}) == 1 and len({tuple(f.layout.yaxis.range) for f in figs}) == 1
    )
    votes, path = figs[1].data
    np.testing.assert_allclose(votes.marker.color, couplings.astype(np.float32))
    assert (votes.marker.cmin, votes.marker.cmax) == (0.0, pytest.approx(0.2))
    sizes = np.asarray(votes.marker.size)
    assert sizes.max() == pytest.approx(viz_routing.VOTE_SIZE_MAX) and sizes.argmax() == lengths.argmax()
    assert len(path.x) == 2 and path.marker.symbol[-1] == "star"  # the parent after iterations 1 and 2
    assert "iteration 1" in figs[0].layout.title.text


def test_distributions_and_inspector_figures():
    edges, counts = xray.histograms(np.array([[0.0, 1.0, 1.0, 2.0], [2.0, 2.0, 2.0, 2.0]]), bins=2)
    fig = viz_routing.distributions_figure(edges, counts, iteration=2, digit=3, primary_lengths=np.array([0.2, 0.9]))
    assert [list(t.y) for t in fig.data[:2]] == [[1, 3], [0, 4]]
    assert fig.data[1].line.width > fig.data[0].line.width  # the current iteration stands out
    assert sum(fig.data[2].y) == 2 and "50.0% above 0.5" in fig.layout.annotations[1].text
    field = viz_routing.field_figure(np.zeros((28, 28)), xray.Field(top=2, left=4, size=17), "capsule")
    (rect,) = field.layout.shapes
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (3.5, 20.5, 1.5, 18.5)
    capsule = viz_routing.capsule_figure(np.arange(8) / 10, np.arange(10) / 10)
    assert len(capsule.data[0].y) == 8 and len(capsule.data[1].y) == 10


def test_lengths_by_iteration_marks_the_chosen_count():
    lengths = np.random.default_rng(1).random((5, J))
    fig = viz_routing.lengths_by_iteration_figure(lengths, chosen=3, predicted=2)
    assert len(fig.data) == J and all(len(t.y) == 5 for t in fig.data)
    assert fig.layout.shapes[0].x0 == 3
    assert fig.data[2].line.width == max(t.line.width for t in fig.data)
    assert "1–5 iterations" in fig.layout.title.text


def test_lengths_by_iteration_names_the_count_it_marks_not_a_stale_place():
    """The subtitle said 'dotted line: the sidebar's count' after the count had left the sidebar."""
    fig = viz_routing.lengths_by_iteration_figure(np.full((5, J), 0.5), chosen=3)
    assert "sidebar" not in fig.layout.title.text
    assert "dotted line: 3, the routing iterations the prediction uses" in said(fig.layout.title.text)
