"""capsviz.analysis.xray: the receptive field by perturbation, and every summary against a hand-computed case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from capsviz.analysis import xray
from capsviz.model import CapsNet, CapsNetConfig
from capsviz.routing import squash

SMALL = CapsNetConfig(conv_channels=32, primary_types=4)  # the MNIST geometry, fewer channels


@pytest.fixture(scope="module")
def small_model() -> CapsNet:
    torch.manual_seed(0)
    return CapsNet(SMALL).eval()


def test_receptive_field_by_perturbation_of_every_pixel(small_model):
    """Changing one input pixel changes exactly the primary capsules whose field contains it."""
    g, size = SMALL.primary_grid, SMALL.input_size
    torch.manual_seed(1)
    base = torch.rand(1, 1, size, size)
    pixels = [(r, c) for r in range(size) for c in range(size)]
    batch = base.repeat(len(pixels) + 1, 1, 1, 1)  # (1 + H*W, 1, H, W): the base, then one changed pixel each
    for i, (r, c) in enumerate(pixels, start=1):
        batch[i, 0, r, c] += 2.0
    with torch.no_grad():
        primary = small_model.primary(torch.relu(small_model.conv1(batch)))  # (1 + H*W, N, I)
    changed = (primary[1:] != primary[:1]).any(dim=-1)  # (H*W, N)
    changed = changed.view(len(pixels), SMALL.primary_types, g, g).any(dim=1)  # (H*W, G, G): any type there
    for i, (r, c) in enumerate(pixels):
        expected = np.array(
            [[xray.receptive_field(SMALL, gr, gc).contains(r, c) for gc in range(g)] for gr in range(g)]
        )
        np.testing.assert_array_equal(changed[i].numpy(), expected, err_msg=f"pixel ({r}, {c})")


def test_receptive_field_geometry():
    field = xray.receptive_field(CapsNetConfig(), 5, 0)
    assert (field.top, field.left, field.size) == (10, 0, 17)  # the last row reaches pixel 26 of 0..27
    assert field.contains(26, 16) and not field.contains(27, 0) and not field.contains(9, 0)


def test_capsule_position_round_trip():
    for n in (0, 35, 36, 1151):
        assert xray.capsule_index(*xray.capsule_position(n, 6), 6) == n
    assert xray.capsule_position(36 * 3 + 6 * 2 + 5, 6) == (3, 2, 5)


def test_winner_ties_are_no_winner():
    assert xray.winner(np.full(10, 0.1)) is None
    assert xray.winner(np.array([0.2, 0.5, 0.5])) is None
    assert xray.winner(np.array([0.2, 0.5, 0.3])) == 1
    assert xray.winner(np.array([0.1, 0.1 + 2e-6])) == 1
    assert xray.winner(np.array([0.1, 0.1 + 5e-7])) is None


def test_position_split_of_uniform_and_of_one_dominant_parent():
    g, types, j = 6, 32, 10
    uniform = np.full((types * g * g, j), 0.1)
    np.testing.assert_allclose(xray.position_split(uniform, g), np.full((g * g, j), 0.1))
    dominant = uniform.copy()
    dominant[: g * g] = 0.0
    dominant[: g * g, 3] = 1.0  # type 0 sends everything to digit 3, the other 31 types stay uniform
    split = xray.position_split(dominant, g)
    np.testing.assert_allclose(split[:, 3], (1.0 + 31 * 0.1) / 32)
    np.testing.assert_allclose(split[:, 0], 31 * 0.1 / 32)
    np.testing.assert_allclose(split.sum(axis=1), 1.0)


def test_moved_fraction_hand_computed():
    uniform = np.full((2, 4, 10), 0.1)
    assert xray.moved_fraction(uniform) == pytest.approx(0.0)
    one_hot = uniform.copy()
    one_hot[1] = 0.0
    one_hot[1, :, 7] = 1.0
    assert xray.moved_fraction(one_hot) == pytest.approx(0.9)  # 1 - 1/J
    half = uniform.copy()
    half[1, :2] = one_hot[1, :2]  # half the children go wholly to digit 7
    assert xray.moved_fraction(half) == pytest.approx(0.45)


def hand_ray(votes: np.ndarray, couplings: np.ndarray, grid: int = 1) -> xray.RoutingXray:
    """A RoutingXray whose poses are computed from the given couplings, as routing does."""
    s = np.einsum("rnj,njd->rjd", couplings, votes)
    poses = squash(torch.from_numpy(s)).numpy()
    logits = np.log(np.maximum(couplings, 1e-30))  # any logits with these softmaxes
    n = votes.shape[0]
    return xray.RoutingXray(np.zeros((2, 2)), np.ones((n, 2)), votes, couplings, logits, poses, grid)


def test_summary_uniform_and_one_dominant_parent():
    votes = np.zeros((2, 2, 3))
    votes[:, 0, 0] = 1.0  # both children vote (1, 0, 0) for digit 0 and (0, 1, 0) for digit 1
    votes[:, 1, 1] = 1.0
    uniform = np.full((2, 2, 2), 0.5)
    ray = hand_ray(votes, uniform)
    s = xray.routing_summary(ray, 0)
    assert s.moved == pytest.approx(0.0) and s.share_first == s.share_last == pytest.approx(0.5)
    assert s.winner_first is None and s.winner_last is None  # equal lengths: a tie, no winner
    dominant = uniform.copy()
    dominant[1] = [[1.0, 0.0], [1.0, 0.0]]  # iteration 2: both children go wholly to digit 0
    s = xray.routing_summary(hand_ray(votes, dominant), 0)
    assert s.moved == pytest.approx(0.5)
    assert s.share_last == pytest.approx(1.0)
    assert s.length_first == pytest.approx(0.5)  # |s| = 1: 1 / (1 + 1)
    assert s.length_last == pytest.approx(0.8)  # |s| = 2: 4 / 5
    assert s.winner_first is None and s.winner_last == 0
    text = xray.summary_text(hand_ray(votes, dominant), 0)
    assert "moved 50.0%" in text and "50.0% to 100.0%" in text and "0.500 to 0.800" in text
    assert "longest capsule changed" in text
    assert "routing does nothing" in xray.summary_text(hand_ray(votes, uniform[:1]), 0)


def test_votes_and_iterations_text_hand_computed():
    votes = np.zeros((2, 2, 3))
    votes[0, 0, 0], votes[1, 0, 0] = 1.0, -0.5  # child 1 disagrees with digit 0
    votes[:, 1, 1] = 1.0
    ray = hand_ray(votes, np.full((1, 2, 2), 0.5))
    text = xray.votes_text(ray, 0, 1)
    assert "1 of 2 votes point the same way" in text and "range 0.500 to 0.500" in text
    assert xray.iterations_text(np.array([[0.2, 0.5], [0.1, 0.6]])) == (
        "The longest capsule is 1 after every count from 1 to 2 iterations; its length goes 0.500 → 0.600."
    )
    assert "1 → tie, 2 → 0" in xray.iterations_text(np.array([[0.5, 0.5], [0.6, 0.1]]))


def test_vote_plane_axis_one_is_the_parent_and_axis_two_the_largest_other_spread():
    votes = np.array([[2.0, 0.0, 3.0], [2.0, 0.0, -3.0], [1.0, 0.1, 0.0], [1.0, -0.1, 0.0]])
    parent = np.array([0.5, 0.0, 0.0])
    basis = xray.vote_plane(votes, parent)
    np.testing.assert_allclose(basis[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(np.abs(basis[1]), [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-12)
    points = xray.project(votes, basis)
    np.testing.assert_allclose(points[:, 0] * np.linalg.norm(parent), votes @ parent)  # x * |v| = agreement
    assert xray.captured_fraction(votes, basis) == pytest.approx(28 / 28.02)  # all but the 0.1s of axis 2


def test_vote_plane_of_a_zero_parent_uses_the_votes_own_axes():
    votes = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    basis = xray.vote_plane(votes, np.zeros(2))
    np.testing.assert_allclose(np.abs(basis), np.eye(2), atol=1e-12)
    assert np.isfinite(basis).all()


def test_histograms_share_edges_across_iterations():
    edges, counts = xray.histograms(np.array([[0.0, 1.0, 1.0, 2.0], [2.0, 2.0, 2.0, 2.0]]), bins=2)
    np.testing.assert_allclose(edges, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(counts, [[1, 3], [0, 4]])


def test_xray_of_a_real_model_matches_its_forward_pass(small_model):
    torch.manual_seed(2)
    x = torch.rand(1, 28, 28)
    ray = xray.xray(small_model, x, iterations=5)
    n = SMALL.num_primary
    assert ray.votes.shape == (n, 10, 16) and ray.couplings.shape == (5, n, 10) and ray.poses.shape == (5, 10, 16)
    np.testing.assert_array_equal(ray.couplings[0], np.float32(0.1))  # iteration 1: exactly uniform
    np.testing.assert_allclose(ray.couplings.sum(axis=-1), 1.0, atol=1e-5)
    for r in (1, 3, 5):
        with torch.no_grad():
            lengths = small_model(x[None], routing_iters=r).lengths[0].numpy()
        np.testing.assert_allclose(ray.upto(r).lengths[-1], lengths, rtol=1e-5, atol=1e-6)
    # the logits of iteration r + 1 are those of r plus r's agreements (Procedure 1, line 7)
    np.testing.assert_allclose(ray.logits[1:], ray.logits[:-1] + ray.agreements[:-1], rtol=1e-4, atol=1e-5)
    rows = xray.procedure_rows(ray, 7, 3)
    assert all(v.shape == (5,) for v in rows.values())
    np.testing.assert_allclose(rows["v"], rows["s"] ** 2 / (1 + rows["s"] ** 2), rtol=1e-4, atol=1e-7)
    report = xray.capsule_report(ray, 40)
    assert (report.capsule_type, report.row, report.col) == (1, 0, 4)
    assert report.length == pytest.approx(float(np.linalg.norm(ray.primary[40])))
    assert report.couplings.shape == report.agreements.shape == (5, 10)
    with pytest.raises(ValueError):
        xray.capsule_report(ray, n)
    with pytest.raises(ValueError):
        ray.upto(6)
    assert math.isclose(xray.moved_fraction(ray.upto(1).couplings), 0.0)


def test_inference_read_from_the_xray_equals_a_direct_run(small_model):
    from capsviz.analysis.inference import from_xray, infer

    torch.manual_seed(3)
    x = torch.rand(1, 28, 28)
    full = xray.xray(small_model, x)
    for r in (1, 3, 5):
        direct, read = infer(small_model, x, r), from_xray(small_model, full.upto(r))
        assert read.predicted == direct.predicted
        for name in ("image", "lengths", "reconstruction", "couplings", "lengths_per_iter", "activations"):
            np.testing.assert_allclose(getattr(read, name), getattr(direct, name), rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(read.poses.numpy(), direct.poses.numpy(), rtol=1e-5, atol=1e-6)
