"""MultiMNIST generation: seeded pairs of different classes, shifts within 4 px, the clipped-sum overlay, the
fixed test set, fresh pairs every epoch, and the bounding-box overlap, on synthetic digits and hand-built cases."""

import itertools

import numpy as np
import pytest
import torch

from capsviz import multimnist
from capsviz.data import Split
from capsviz.multimnist import CANVAS, MAX_SHIFT, PairSource

from conftest import synthetic_digits


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits() -> Split:
    return synthetic_digits(60, seed=3)


def test_the_same_seed_draws_the_same_pairs_and_another_seed_others(digits):
    a, b = (multimnist.draw_pairs(digits.labels, seeded(7)) for _ in range(2))
    other = multimnist.draw_pairs(digits.labels, seeded(8))
    for name in ("first", "second", "offsets"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.second, other.second) and not torch.equal(a.offsets, other.offsets)
    assert torch.equal(multimnist.compose(digits, a).images, multimnist.compose(digits, b).images)


def test_every_digit_is_a_first_digit_once_and_the_two_labels_always_differ(digits):
    plan = multimnist.draw_pairs(digits.labels, seeded(0))
    assert sorted(plan.first.tolist()) == list(range(len(digits)))
    pairs = multimnist.compose(digits, plan)
    assert (pairs.labels[:, 0] != pairs.labels[:, 1]).all()
    assert torch.equal(pairs.labels[:, 0], digits.labels[plan.first])


def test_partners_come_from_every_other_class_even_when_one_class_dominates():
    labels = torch.tensor([0] * 50 + [1, 2])  # digit 50 is the only 1, digit 51 the only 2
    partners = multimnist.partners(labels, torch.zeros(400, dtype=torch.long), seeded(1))  # partners of a 0
    assert set(partners.tolist()) == {50, 51}
    assert set(multimnist.partners(labels, torch.full((2000,), 50), seeded(2)).tolist()) == set(range(50)) | {51}


def test_digits_of_a_single_class_cannot_make_pairs():
    with pytest.raises(ValueError, match="at least two classes"):
        multimnist.draw_pairs(torch.zeros(5, dtype=torch.long), seeded(0))


def test_each_digit_is_shifted_by_at_most_four_pixels_and_kept_whole(digits):
    pairs = multimnist.compose(digits, multimnist.draw_pairs(digits.labels, seeded(4)))
    assert pairs.offsets.min() >= 0 and pairs.offsets.max() <= 2 * MAX_SHIFT
    assert set(pairs.offsets.unique().tolist()) == set(range(2 * MAX_SHIFT + 1))  # every shift occurs
    plan = multimnist.draw_pairs(digits.labels, seeded(4))
    for i in range(len(pairs)):
        for k, index in enumerate((plan.first[i], plan.second[i])):
            row, col = pairs.offsets[i, k].tolist()
            single = pairs.singles[i, k]  # (S, S)
            assert torch.equal(single[row : row + 28, col : col + 28], digits.images[index])
            assert single.sum() == digits.images[index].sum()  # nothing outside the digit's frame


def test_the_composite_is_the_sum_of_the_single_images_clipped_at_255(digits):
    pairs = multimnist.compose(digits, multimnist.draw_pairs(digits.labels, seeded(5)))
    total = pairs.singles.int().sum(dim=1)  # (P, S, S)
    assert torch.equal(pairs.images, total.clamp(max=255).to(torch.uint8))
    assert (total > 255).any()  # the synthetic squares do cross: clipping is exercised
    singles = torch.tensor([[200, 100, 0], [200, 50, 7]], dtype=torch.uint8).view(1, 2, 1, 3)
    assert multimnist.overlay(singles).tolist() == [[[255, 150, 7]]]


def test_the_test_set_is_fixed_and_keeps_both_labels_and_single_images(digits):
    test, again = multimnist.fixed_test_pairs(digits), multimnist.fixed_test_pairs(digits)
    assert len(test) == len(digits) and test.images.shape == (60, CANVAS, CANVAS)
    assert test.labels.shape == (60, 2) and test.singles.shape == (60, 2, CANVAS, CANVAS)
    assert all(torch.equal(getattr(test, f), getattr(again, f)) for f in ("images", "labels", "singles", "offsets"))
    assert torch.equal(test.head(7).singles, test.singles[:7]) and len(multimnist.fixed_test_pairs(digits, n=10)) == 10


def test_training_pairs_are_drawn_afresh_every_epoch_and_shared_out_across_ranks(digits):
    def epoch(seed, shard=(0, 1)):
        return list(multimnist.batches(PairSource(digits), 16, generator=seeded(seed), shard=shard))

    one, again, two = epoch(1), epoch(1), epoch(2)
    assert sum(len(labels) for _, labels, _ in one) == len(digits)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again))
    assert not torch.equal(torch.cat([b[0] for b in one]), torch.cat([b[0] for b in two]))
    whole = torch.cat([images for images, _, _ in one])  # (60, S, S)
    ranks = [torch.cat([images for images, _, _ in epoch(1, (rank, 2))]) for rank in (0, 1)]
    assert torch.equal(ranks[0], whole[0::2]) and torch.equal(ranks[1], whole[1::2])


def test_ink_boxes_and_their_overlap_on_a_hand_built_pair():
    singles = torch.zeros(2, 2, CANVAS, CANVAS, dtype=torch.uint8)
    singles[0, 0, 0:10, 0:10] = 9  # rows 0..9, cols 0..9: 100 px
    singles[0, 1, 5:15, 5:20] = 9  # rows 5..14, cols 5..19: 150 px; they share rows 5..9, cols 5..9: 25 px
    singles[1, 0, 3, 4] = 1  # one pixel; its partner is empty
    boxes = multimnist.ink_boxes(singles)
    assert boxes[0].tolist() == [[0, 0, 9, 9], [5, 5, 14, 19]]
    assert boxes[1].tolist() == [[3, 4, 3, 4], [0, 0, -1, -1]]
    overlap = multimnist.box_overlap(boxes)
    assert overlap["iou"].tolist() == pytest.approx([25 / (100 + 150 - 25), 0.0])
    assert overlap["of_smaller"].tolist() == pytest.approx([25 / 100, 0.0])


def test_frame_overlap_of_hand_built_shifts():
    offsets = torch.tensor([[[0, 0], [8, 8]], [[4, 4], [4, 4]], [[0, 3], [2, 0]]])  # (3 pairs, 2 digits, 2)
    overlap = multimnist.box_overlap(multimnist.frame_boxes(offsets))["of_smaller"]
    assert overlap.tolist() == pytest.approx([20 * 20 / 784, 1.0, 26 * 25 / 784])


def test_the_expected_frame_overlap_is_the_papers_eighty_percent():
    shifts = range(2 * MAX_SHIFT + 1)
    offsets = torch.tensor(list(itertools.product(shifts, repeat=4))).view(-1, 2, 2)  # every equally likely draw
    mean = multimnist.box_overlap(multimnist.frame_boxes(offsets))["of_smaller"].mean().item()
    assert mean == pytest.approx((1 - 240 / 81 / 28) ** 2) and round(mean, 2) == 0.80


def test_the_overlap_summary_of_a_test_set(digits):
    summary = multimnist.overlap_summary(multimnist.fixed_test_pairs(digits))
    assert summary["pairs"] == 60 and set(summary) == {"pairs", "frame_overlap", "ink_iou", "ink_of_smaller"}
    assert 0.6 < summary["frame_overlap"] < 1 and 0 < summary["ink_iou"] <= summary["ink_of_smaller"] <= 1
    iou, of_smaller = [], []  # the ink boxes' overlap, pair by pair, counted here pixel by pixel
    for a, b in multimnist.fixed_test_pairs(digits).singles.numpy() > 0:
        box = [np.zeros_like(a) for _ in range(2)]
        for mask, ink in zip(box, (a, b)):
            rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
            mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
        both = (box[0] & box[1]).sum()
        iou.append(both / (box[0] | box[1]).sum())
        of_smaller.append(both / min(box[0].sum(), box[1].sum()))
    assert summary["ink_iou"] == pytest.approx(np.mean(iou), abs=1e-6)
    assert summary["ink_of_smaller"] == pytest.approx(np.mean(of_smaller), abs=1e-6)
