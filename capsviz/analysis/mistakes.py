"""The model's mistakes on MNIST test images: find one quickly, or list them all.

    index, searched = find_misclassified(model, split, order, routing_iters=3, on_batch=report)
    errors = misclassified(model, split, routing_iters=3)   # [(index, true, predicted), ...]

Both report progress through `on_batch(done, total)`, so a UI can show it; nothing here
knows about the UI. Images go through the model as given (the app's are in eval mode), unshifted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from capsviz.data import Split, to_float
from capsviz.model import CapsNet

SEARCH_BATCH = 250
SEARCH_MAX_IMAGES = 5000


@dataclass(frozen=True)
class Mistake:
    index: int  # in the split
    label: int
    predicted: int


def _predict(model: CapsNet, images: torch.Tensor, routing_iters: int) -> torch.Tensor:
    """(b, 28, 28) uint8 -> (b,) predicted digits, on the model's device."""
    device = next(model.parameters()).device
    x = to_float(images).to(device)  # (b, 1, 28, 28)
    with torch.no_grad():
        return model(x, routing_iters=routing_iters).lengths.argmax(1).cpu()


def find_misclassified(
    model: CapsNet,
    split: Split,
    order: torch.Tensor,
    *,
    routing_iters: int,
    batch_size: int = SEARCH_BATCH,
    max_images: int = SEARCH_MAX_IMAGES,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[int | None, int]:
    """Search the split in `order` until the model gets one wrong: (its index or None, images searched)."""
    total = min(len(order), max_images)
    for start in range(0, total, batch_size):
        idx = order[start : min(start + batch_size, total)]  # (b,)
        wrong = torch.nonzero(_predict(model, split.images[idx], routing_iters) != split.labels[idx]).flatten()
        if on_batch is not None:
            on_batch(start + len(idx), total)
        if len(wrong):
            return int(idx[wrong[0]]), start + int(wrong[0]) + 1
    return None, total


def misclassified(
    model: CapsNet,
    split: Split,
    *,
    routing_iters: int,
    batch_size: int = SEARCH_BATCH,
    on_batch: Callable[[int, int], None] | None = None,
) -> list[Mistake]:
    """Every image of the split the model gets wrong, in split order."""
    found = []
    for start in range(0, len(split), batch_size):
        labels = split.labels[start : start + batch_size]  # (b,)
        predicted = _predict(model, split.images[start : start + batch_size], routing_iters)  # (b,)
        for offset in torch.nonzero(predicted != labels).flatten().tolist():
            found.append(Mistake(start + offset, int(labels[offset]), int(predicted[offset])))
        if on_batch is not None:
            on_batch(min(start + batch_size, len(split)), len(split))
    return found
