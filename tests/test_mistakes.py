import torch

from capsviz.analysis.mistakes import Mistake, find_misclassified, misclassified
from capsviz.data import Split


class FixedModel(torch.nn.Module):
    """Predicts the brightness of pixel (0, 0) // 10: a model whose mistakes are known in advance."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, routing_iters=3):
        digit = (x[:, 0, 0, 0] * 255).round().long() // 10  # (b,)
        lengths = torch.nn.functional.one_hot(digit, 10).float()  # (b, 10)
        return type("Out", (), {"lengths": lengths})()


def split_with_mistakes_at(wrong: set[int], n: int = 30) -> Split:
    labels = torch.arange(n) % 10
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    for i in range(n):
        shown = (labels[i] + 1) % 10 if i in wrong else labels[i]
        images[i, 0, 0] = int(shown) * 10
    return Split(images, labels)


def test_misclassified_lists_every_mistake_with_both_labels():
    split = split_with_mistakes_at({3, 17, 29})
    calls = []
    found = misclassified(FixedModel(), split, routing_iters=1, batch_size=8, on_batch=lambda d, t: calls.append(d))
    assert found == [Mistake(3, 3, 4), Mistake(17, 7, 8), Mistake(29, 9, 0)]
    assert calls == [8, 16, 24, 30]


def test_find_misclassified_follows_the_order_and_reports_progress():
    split = split_with_mistakes_at({17})
    order = torch.arange(29, -1, -1)  # 29, 28, ..., so 17 is the 13th image looked at
    calls = []
    index, searched = find_misclassified(
        FixedModel(), split, order, routing_iters=1, batch_size=5, on_batch=lambda d, t: calls.append((d, t))
    )
    assert (index, searched) == (17, 13)
    assert calls == [(5, 30), (10, 30), (15, 30)]
    assert find_misclassified(FixedModel(), split_with_mistakes_at(set()), order, routing_iters=1) == (None, 30)
