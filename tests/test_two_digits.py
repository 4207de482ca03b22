"""capsviz.analysis.two_digits: the two-digit canvas, each digit's reconstruction, and where the couplings go."""

import numpy as np
import pytest
import torch

from capsviz import registry, tasks
from capsviz.analysis.two_digits import (
    centred,
    from_two_colours,
    inks_swapped,
    owned_share,
    owners,
    raised,
    read,
    separate,
)
from capsviz.model import CapsNetConfig

SMALL = CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64))


def _capsnet():
    torch.manual_seed(0)
    return registry.build(tasks.for_task(SMALL, "multimnist"))


def test_a_single_digit_sits_at_the_centre_of_the_two_digit_canvas():
    x = torch.rand(1, 28, 28)
    placed = centred(x)
    assert placed.shape == (1, 36, 36) and torch.equal(placed[:, 4:32, 4:32], x)
    assert torch.isclose(placed.sum(), x.sum())


def test_each_named_digit_is_reconstructed_from_its_own_capsule_and_iteration_one_is_uniform():
    capsnet = _capsnet()
    x = torch.rand(1, 36, 36)
    reading = read(capsnet, x, routing_iters=3)
    seen = separate(capsnet, x, reading.named, 3)
    assert seen.share.shape == (3, 2, 10, 10) and np.allclose(seen.share[0], 0.1)
    with torch.no_grad():
        poses, _, _ = capsnet.encode(x[None], 3)
        for k, digit in enumerate(reading.named):
            alone = capsnet.reconstruct(poses, torch.tensor([digit]))[0, 0]  # (36, 36)
            assert np.allclose(seen.reconstructions[k], alone.numpy(), atol=1e-6)
    assert reading.scores[reading.named[0]] >= reading.scores[reading.named[1]] >= np.sort(reading.scores)[-2]


def test_a_position_belongs_to_the_digit_whose_ink_dominates_its_receptive_field():
    singles = torch.zeros(2, 36, 36)
    singles[0, :12, :12] = 1.0  # the first digit, top left
    singles[1, 24:, 24:] = 1.0  # the second, bottom right
    owner = owners(singles, SMALL)  # (10, 10), each field 17x17 at stride 2
    assert owner.shape == (10, 10) and owner[0, 0] == 0 and owner[9, 9] == 1
    assert owner[0, 9] == -1  # neither digit's ink reaches the top-right field
    both = singles.clone()
    both[1, :12, :12] = 0.8  # the second digit's ink under the first's: neither has twice the other's
    assert owners(both, SMALL)[0, 0] == -1
    assert owners(singles[None].repeat(3, 1, 1, 1), SMALL).shape == (3, 10, 10)


def test_the_owned_share_averages_the_couplings_of_each_digits_positions():
    share = np.zeros((1, 2, 2, 2))
    share[0, 0] = [[0.3, 0.1], [0.2, 0.0]]  # coupling to the first digit at the 4 positions
    share[0, 1] = [[0.05, 0.1], [0.1, 0.2]]
    owner = np.array([[0, 1], [0, -1]])
    out = owned_share(share, owner)  # [r, k, j]
    assert np.allclose(out[0, 0], [0.25, 0.075]) and np.allclose(out[0, 1], [0.1, 0.1])
    assert np.isnan(owned_share(share, np.full((2, 2), -1))).all()


def test_raised_counts_the_owned_positions_whose_coupling_to_their_digit_rose():
    share = np.full((3, 2, 2, 2), 0.1)
    share[-1, 0] = [[0.13, 0.09], [0.1, 0.5]]  # the first digit's coupling at the last iteration
    owner = np.array([[0, 0], [0, 1]])
    fraction, change = raised(share, owner, 0)
    assert fraction == pytest.approx(1 / 3) and change == pytest.approx((0.03 - 0.01 + 0.0) / 3)
    assert raised(share, np.full((2, 2), 1), 0) is None


def test_a_two_pen_drawing_becomes_two_inks_fitted_together_onto_the_canvas():
    rgb = np.zeros((280, 280, 4), dtype=np.uint8)
    rgb[60:200, 100:120, 0] = 255  # a red bar (the first digit), 140 px tall
    rgb[100:160, 80:200, 2] = 255  # a blue bar across it (the second)
    x, singles = from_two_colours(rgb)
    assert x.shape == (1, 36, 36) and singles.shape == (2, 36, 36)
    assert torch.allclose(x[0], singles.sum(dim=0).clamp(max=1))  # the overlay rule of the test pairs
    rows = torch.nonzero(singles.amax(dim=0).amax(dim=1) > 0).flatten()
    assert rows.max() - rows.min() + 1 == 26  # the two together: 140 px tall -> FIT, centred
    red_cols = torch.nonzero(singles[0].amax(dim=0) > 0).flatten()
    blue_cols = torch.nonzero(singles[1].amax(dim=0) > 0).flatten()
    assert blue_cols.min() < red_cols.min() and red_cols.max() < blue_cols.max()  # they keep their overlap
    assert from_two_colours(rgb * np.array([1, 1, 0, 1], dtype=np.uint8)) is None  # one pen only: not yet two


def test_inks_read_swapped_only_when_each_reconstruction_covers_the_other_ink():
    inks = np.zeros((2, 4, 4))
    inks[0, :2], inks[1, 2:] = 1, 1
    assert not inks_swapped(inks * 0.8, inks) and inks_swapped(inks[::-1] * 0.8, inks)
