"""capsviz.analysis.affine: hand-computed cases, determinism, and ink kept inside the frame."""

import pytest
import torch
import torch.nn.functional as F

from capsviz.analysis import affine
from capsviz.data import load_mnist, to_float


def frame(points: dict[tuple[int, int], float]) -> torch.Tensor:
    """A (1, 1, 28, 28) image, zero except at the given (row, col) pixels."""
    x = torch.zeros(1, 1, 28, 28)
    for (row, col), value in points.items():
        x[0, 0, row, col] = value
    return x


def strokes(n: int) -> torch.Tensor:
    """n synthetic digits on black: bars and boxes of varied size and place -> (n, 1, 28, 28)."""
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        top, left, height, width = 4 + i % 3, 4 + i % 5, 12 + i % 8, 3 + i % 12
        x[i, 0, top : top + height, left : left + width] = 1.0
        x[i, 0, top + 2 : top + height - 2, left + 1 : left + width - 1] *= 0.3 * (i % 2)  # some hollow
    return x


def test_a_90_degree_turn_moves_each_pixel_where_a_hand_turn_puts_it():
    x = frame({(5, 9): 1.0, (5, 10): 0.5, (20, 3): 0.25})
    turned = affine.warp(x, affine.centred(affine.linear(rotation=torch.tensor([90.0]))))
    # counter-clockwise on screen about (14, 14): (row, col) -> (27 - col, row)
    assert torch.allclose(turned, frame({(18, 5): 1.0, (17, 5): 0.5, (24, 20): 0.25}), atol=1e-5)
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)


def test_an_integer_shift_is_a_roll_with_zeros_coming_in():
    x = torch.rand(2, 1, 28, 28)
    moved = affine.warp(x, affine.shift(3, -2, batch=2))  # 3 right, 2 up
    by_hand = F.pad(x, (3, 0, 0, 2))[:, :, 2:, :28]  # zeros enter on the left and at the bottom
    assert torch.allclose(moved, by_hand, atol=1e-5)  # float32 grid rounding
    assert torch.allclose(moved[:, :, :26, 3:], torch.roll(x, (-2, 3), (2, 3))[:, :, :26, 3:], atol=1e-5)


def test_identity_parameters_give_the_input_back():
    x = torch.rand(3, 1, 28, 28)
    ones, zeros = torch.ones(3), torch.zeros(3)
    same = affine.centred(affine.linear(rotation=zeros, scale_x=ones, scale_y=ones, shear=zeros))
    assert torch.allclose(affine.warp(x, same), x, atol=1e-5)
    for name in affine.SWEEPS:  # each sweep's neutral value too
        neutral = 1.0 if name == "scale" else 0.0
        assert torch.allclose(affine.warp(x, affine.sweep_maps(name, neutral, 3)), x, atol=1e-5)


def test_shear_and_scale_match_a_hand_computed_map():
    lin = affine.linear(shear=torch.tensor([0.5]), scale_x=torch.tensor([2.0]))
    assert torch.allclose(lin, torch.tensor([[[2.0, 0.5], [0.0, 1.0]]], dtype=torch.float64))
    forward = affine.centred(lin)[0]  # (3, 3) about the centre (14, 14)
    points = torch.tensor([[14.0, 14, 1], [15, 14, 1], [14, 15, 1]], dtype=torch.float64).T  # (3, 3): columns
    moved = torch.tensor([[14.0, 14, 1], [16, 14, 1], [14.5, 15, 1]], dtype=torch.float64).T  # x 2, x += y / 2
    assert torch.allclose(forward @ points, moved)


def test_the_same_seed_gives_the_same_images_and_another_seed_others():
    x = strokes(6)
    first, again, other = affine.affine_set(x, seed=7), affine.affine_set(x, seed=7), affine.affine_set(x, seed=8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)
    assert not torch.allclose(first, x, atol=1e-3)  # it did move them


def test_draws_stay_in_affnists_ranges():
    lin = affine.random_linear(2000, seed=0)  # (n, 2, 2) = rotate . shear . scale
    scale_x = lin[:, :, 0].norm(dim=1)  # first column: rotate(scale_x * e_x)
    angle = torch.rad2deg(torch.atan2(-lin[:, 1, 0], lin[:, 0, 0]))
    assert scale_x.min() >= 0.8 - 1e-9 and scale_x.max() <= 1.2 + 1e-9
    assert angle.abs().max() <= 20 + 1e-9 and angle.abs().max() > 19  # the range is used, not just bounded
    determinant = torch.linalg.det(lin)  # = scale_x * scale_y: shear and rotation keep area
    assert determinant.min() >= 0.64 - 1e-9 and determinant.max() <= 1.44 + 1e-9


def lost_ink(x: torch.Tensor, forward: torch.Tensor, pad: int = 28) -> torch.Tensor:
    """Ink the same maps carry outside the 28x28 frame, measured on a canvas `pad` px larger each side."""
    around = affine.shift(pad, pad, x.shape[0]) @ forward @ affine.shift(-pad, -pad, x.shape[0])
    big = affine.warp(F.pad(x, (pad,) * 4), around)  # (B, 1, 28 + 2 pad, 28 + 2 pad)
    inside = big[:, :, pad : pad + 28, pad : pad + 28]
    assert torch.allclose(inside, affine.warp(x, forward), atol=1e-5)  # the frame shows the same picture
    return big.sum((1, 2, 3)) - inside.sum((1, 2, 3))  # (B,)


def test_the_affine_set_keeps_every_digits_ink_inside_the_frame():
    x = strokes(24)
    for seed in range(3):
        assert lost_ink(x, affine.affine_maps(x, seed=seed)).abs().max() < 1e-4
    # the check can fail: a plain shift of 10 px pushes these digits' ink out
    assert lost_ink(x, affine.shift(10, 0, 24)).max() > 1


def test_real_digits_keep_their_ink_too(mnist_root):
    x = to_float(load_mnist(mnist_root, train=False).images[:64])  # (64, 1, 28, 28)
    assert lost_ink(x, affine.affine_maps(x, seed=0)).abs().max() < 1e-4


@pytest.mark.parametrize("name", sorted(affine.SWEEPS))
def test_sweeps_span_their_stated_ranges(name):
    values = affine.SWEEPS[name]
    assert values == tuple(sorted(values)) and len(values) >= 9
    assert (values[0], values[-1]) == {"rotation": (-60, 60), "scale": (0.6, 1.4), "shear": (-0.6, 0.6)}[name]
    maps = affine.sweep_maps(name, values[-1], 2)
    assert maps.shape == (2, 3, 3) and not torch.allclose(maps, torch.eye(3, dtype=torch.float64))


def test_an_ink_box_covers_what_bilinear_resampling_can_reach():
    boxes = affine.ink_boxes(torch.cat([frame({(5, 9): 1.0, (7, 12): 0.1}), frame({})]))  # (2, 2, 2)
    assert boxes[0].tolist() == [[8.5, 13.5], [4.5, 8.5]]  # x: columns 9..12, y: rows 5..7, each +-1 px
    assert boxes[1].tolist() == [[0.0, 28.0], [0.0, 28.0]]  # no ink: the whole frame


def test_only_digits_that_would_not_fit_are_shrunk():
    x = strokes(24)
    fit = affine.shrink_factors(x, seed=0)  # (24,)
    assert fit.max() == 1 and fit.min() > 0.5
    full = torch.ones(1, 1, 28, 28)  # ink everywhere: any turn or growth must be shrunk back
    assert affine.shrink_factors(full, seed=0)[0] < 1
    small = frame({(14, 14): 1.0})  # one pixel: never shrunk
    assert affine.shrink_factors(small, seed=0)[0] == 1


def test_a_prefix_gets_the_same_draws_as_the_whole_set():
    """So `--limit N` measures the first N images of the full affNIST-like set, not other ones."""
    assert torch.equal(affine.random_linear(10_000, seed=0)[:37], affine.random_linear(37, seed=0))
    x = strokes(30)
    assert torch.equal(affine.affine_maps(x, seed=1)[:7], affine.affine_maps(x[:7], seed=1))
