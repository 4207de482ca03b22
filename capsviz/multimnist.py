"""MultiMNIST, generated on the fly as in Sabour, Frosst & Hinton (2017), section 6.

Each image holds two MNIST digits of different classes from the same split. Each digit's
28x28 frame is shifted by up to 4 px in each direction on a 36x36 canvas (its top-left
corner at rows and columns 0..8), and the two are overlaid as a sum clipped to 255, the
rule of the authors' data script (research/capsules/input_data/mnist/mnist_shift.py in
tensorflow/models): neither digit hides the other, and where strokes cross the ink saturates,
so each single image stays a faithful decoder target under the composite.

    from capsviz import multimnist
    test = multimnist.fixed_test_pairs(load_mnist(train=False))   # the fixed 10,000 test pairs
    source = multimnist.PairSource(load_mnist(train=True))  # training pairs, drawn per epoch
    for images, labels, singles in multimnist.batches(source, 128, generator=epoch_generator): ...

Training pairs are drawn afresh every epoch from that epoch's seeded generator: every
training digit is the first digit of one pair, and its partner is drawn uniformly from the
digits of the other classes. The test pairs are drawn the same way, once, from TEST_SEED.
Nothing is stored on disk.

Shape letters: N digits, P pairs, K = 2 digits per pair, S = 36 canvas side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from capsviz.data import Split

CANVAS = 36
MAX_SHIFT = 4  # pixels, in each direction: the frame's corner moves over 0..2*MAX_SHIFT
DIGITS = 2
TEST_SEED = 2017
TEST_PAIRS = 10_000
DESCRIPTION = (
    "MultiMNIST pairs drawn afresh each epoch: two digits of different classes, each shifted by up to "
    f"{MAX_SHIFT} px on a {CANVAS}x{CANVAS} canvas, overlaid as a sum clipped to 255"
)


@dataclass
class PairPlan:
    """Which digits make each pair and where they sit, before any pixel is drawn.

    first, second: (P,) digit indices; offsets: (P, K, 2) the (row, col) of each digit's
    28x28 frame on the canvas, in 0..2*MAX_SHIFT (a shift of offset - MAX_SHIFT).
    """

    first: torch.Tensor
    second: torch.Tensor
    offsets: torch.Tensor

    def __len__(self) -> int:
        return self.first.shape[0]

    def take(self, index: torch.Tensor | slice) -> PairPlan:
        return PairPlan(self.first[index], self.second[index], self.offsets[index])


@dataclass
class Pairs(Split):
    """Composed pairs: images (P, S, S) uint8 composites, labels (P, K) int64, singles (P, K, S, S) uint8
    (each digit alone on the canvas), offsets (P, K, 2) as in PairPlan.

    A Split whose labels name two digits: `capsviz.data.batches` and `capsviz.train.evaluate` read it.
    """

    singles: torch.Tensor
    offsets: torch.Tensor

    def to(self, device: torch.device | str) -> Pairs:
        return Pairs(*(t.to(device) for t in (self.images, self.labels, self.singles, self.offsets)))

    def head(self, n: int | None) -> Pairs:
        return self if n is None else Pairs(*(t[:n] for t in (self.images, self.labels, self.singles, self.offsets)))


@dataclass
class PairSource:
    """The digits training pairs are drawn from: len(digits) fresh pairs an epoch (`batches`)."""

    digits: Split

    def __len__(self) -> int:
        return len(self.digits)

    def to(self, device: torch.device | str) -> PairSource:
        return PairSource(self.digits.to(device))

    def head(self, n: int | None) -> PairSource:
        return PairSource(self.digits.head(n))


def partners(labels: torch.Tensor, first: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each digit index in `first` (P,), one digit drawn uniformly from those of another class -> (P,).

    The digits are listed class by class; a draw r among the `others` of a class skips that class's block.
    """
    labels, first = labels.cpu(), first.cpu()
    counts = torch.bincount(labels)  # (classes,)
    own = labels[first]  # (P,)
    others = len(labels) - counts[own]  # (P,) digits of another class than each first digit
    if (others == 0).any():
        raise ValueError("MultiMNIST needs digits of at least two classes")
    by_class = torch.argsort(labels, stable=True)  # (N,) digit indices, class by class
    starts = counts.cumsum(0) - counts  # (classes,) where each class's block begins
    r = (torch.rand(len(first), generator=generator, dtype=torch.float64) * others).long()  # (P,) in 0..others-1
    r = torch.minimum(r, others - 1)  # a float product that rounds up stays in range
    position = r + counts[own] * (r >= starts[own])  # skip the first digit's own class
    return by_class[position]


def draw_pairs(labels: torch.Tensor, generator: torch.Generator, n: int | None = None) -> PairPlan:
    """n pairs (default one per digit) over digits with `labels` (N,): a permutation's first n digits,
    each with a partner of another class, every digit at its own random shift."""
    total = len(labels)
    n = total if n is None else n
    if not 0 < n <= total:
        raise ValueError(f"draw 1..{total} pairs from {total} digits, not {n}")
    first = torch.randperm(total, generator=generator)[:n]
    second = partners(labels, first, generator)
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (n, DIGITS, 2), generator=generator)
    return PairPlan(first, second, offsets)


def place(digits: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """digits (P, 28, 28), offsets (P, 2) (row, col) -> (P, S, S): each digit's frame pasted on an empty canvas."""
    p, h, w = digits.shape
    canvas = digits.new_zeros(p, CANVAS, CANVAS)
    rows = offsets[:, 0, None] + torch.arange(h, device=digits.device)  # (P, 28)
    cols = offsets[:, 1, None] + torch.arange(w, device=digits.device)  # (P, 28)
    batch = torch.arange(p, device=digits.device)[:, None, None]
    canvas[batch, rows[:, :, None], cols[:, None, :]] = digits  # (P, 28, 28) windows of (P, S, S)
    return canvas


def overlay(singles: torch.Tensor) -> torch.Tensor:
    """The overlay rule: singles (P, K, S, S) uint8 -> (P, S, S) uint8, their sum clipped to 255."""
    return singles.sum(dim=1, dtype=torch.int32).clamp_(max=255).to(torch.uint8)


def compose(digits: Split, plan: PairPlan) -> Pairs:
    """Draw the pairs a plan names from `digits` (N, 28, 28), on the digits' device."""
    device = digits.images.device
    first, second, offsets = plan.first.to(device), plan.second.to(device), plan.offsets.to(device)
    singles = torch.stack(
        [place(digits.images[first], offsets[:, 0]), place(digits.images[second], offsets[:, 1])], dim=1
    )  # (P, K, S, S)
    labels = torch.stack([digits.labels[first], digits.labels[second]], dim=1)  # (P, K)
    return Pairs(overlay(singles), labels, singles, offsets)


def fixed_test_pairs(digits: Split, n: int = TEST_PAIRS, seed: int = TEST_SEED) -> Pairs:
    """The fixed, seeded test set: n pairs (at most one per digit as its first digit) of the test digits."""
    plan = draw_pairs(digits.labels, torch.Generator().manual_seed(seed), min(n, len(digits)))
    return compose(digits, plan)


def batches(
    source: PairSource,
    batch_size: int,
    *,
    generator: torch.Generator,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of fresh pairs: (images (b, S, S), labels (b, K), singles (b, K, S, S)), composed on the
    digits' device. shard = (rank, world size) takes this process's share of the same plan on every rank."""
    plan = draw_pairs(source.digits.labels, generator)
    rank, world = shard
    order = torch.arange(len(plan))[rank::world][: len(plan) // world] if world > 1 else torch.arange(len(plan))
    for start in range(0, len(order), batch_size):
        pairs = compose(source.digits, plan.take(order[start : start + batch_size]))
        yield pairs.images, pairs.labels, pairs.singles


def frame_boxes(offsets: torch.Tensor, side: int = 28) -> torch.Tensor:
    """offsets (P, K, 2) -> (P, K, 4) inclusive (top, left, bottom, right) of each digit's 28x28 frame."""
    return torch.cat([offsets, offsets + side - 1], dim=-1)


def ink_boxes(singles: torch.Tensor) -> torch.Tensor:
    """singles (P, K, S, S) -> (P, K, 4) inclusive (top, left, bottom, right) of the pixels above 0.

    An empty image gets the empty box (0, 0, -1, -1).
    """
    size = singles.shape[-1]
    index = torch.arange(size, device=singles.device)
    rows, cols = singles.amax(dim=-1) > 0, singles.amax(dim=-2) > 0  # (P, K, S) each
    far = torch.full_like(index, size)

    def span(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.where(mask, index, far).amin(dim=-1)  # (P, K)
        high = torch.where(mask, index, -1).amax(dim=-1)  # (P, K)
        return torch.where(mask.any(dim=-1), low, 0), high

    (top, bottom), (left, right) = span(rows), span(cols)
    return torch.stack([top, left, bottom, right], dim=-1)


def box_overlap(boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """boxes (P, 2, 4) inclusive -> per pair (P,): the intersection's area over the union's ("iou") and over
    the smaller box's ("of_smaller"); 0 where a box is empty."""
    a, b = boxes[:, 0].long(), boxes[:, 1].long()  # (P, 4)

    def area(box: torch.Tensor) -> torch.Tensor:
        return (box[:, 2] - box[:, 0] + 1).clamp(min=0) * (box[:, 3] - box[:, 1] + 1).clamp(min=0)

    low, high = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])  # (P, 2) each
    inter = area(torch.cat([low, high], dim=1)).double()
    area_a, area_b = area(a).double(), area(b).double()
    union = area_a + area_b - inter
    smaller = torch.minimum(area_a, area_b)
    return {
        "iou": torch.where(union > 0, inter / union.clamp(min=1), 0.0),
        "of_smaller": torch.where(smaller > 0, inter / smaller.clamp(min=1), 0.0),
    }


def overlap_summary(pairs: Pairs) -> dict[str, float]:
    """How much the two digits of each pair overlap, averaged over the pairs.

    frame_overlap: the share of one digit's 28x28 frame that the other's covers (the frames are the same
    size, so either way round), the paper's "80% overlap in the bounding box": with both shifts uniform
    in -4..4 its expectation is (1 - E|dx| / 28)^2 = (1 - 240/81/28)^2 = 0.7996.
    ink_iou, ink_of_smaller: the boxes around each digit's ink (pixels above 0), intersection over union
    and over the smaller box.
    """
    frames = box_overlap(frame_boxes(pairs.offsets))["of_smaller"]
    ink = box_overlap(ink_boxes(pairs.singles))
    means = {"frame_overlap": frames, "ink_iou": ink["iou"], "ink_of_smaller": ink["of_smaller"]}
    return {"pairs": len(pairs), **{name: value.mean().item() for name, value in means.items()}}
