import pytest
import torch

from capsviz.losses import capsule_loss, margin_loss, reconstruction_loss
from capsviz.model import CapsNetOutput


def test_margin_loss_hand_computed():
    lengths = torch.tensor([[0.95, 0.05, 0.5], [0.2, 0.7, 0.1]])
    labels = torch.tensor([0, 2])
    # example 0: present 0 (0.95 > 0.9); absent: 0.05 -> 0, 0.5 -> 0.5 * 0.4^2 = 0.08
    # example 1: present (0.9 - 0.1)^2 = 0.64; absent: 0.5 * 0.1^2 + 0.5 * 0.6^2 = 0.185
    expected = torch.tensor([0.08, 0.825])
    assert torch.allclose(margin_loss(lengths, labels), expected, atol=1e-6)


def test_capsule_loss_hand_computed():
    lengths = torch.tensor([[0.95, 0.05, 0.5], [0.2, 0.7, 0.1]])
    x = torch.zeros(2, 1, 2, 2)
    reconstruction = torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0, 0]]).view(2, 1, 2, 2)
    # SSE: 1.0 and 0.5; weighted by 0.0005
    out = CapsNetOutput(lengths=lengths, poses=torch.zeros(2, 3, 16), reconstruction=reconstruction)
    expected = ((0.08 + 0.0005 * 1.0) + (0.825 + 0.0005 * 0.5)) / 2
    assert torch.isclose(capsule_loss(out, x, torch.tensor([0, 2])), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(reconstruction_loss(reconstruction, x), torch.tensor([1.0, 0.5]))


def test_margin_loss_with_two_targets_marks_both_digits_present():
    lengths = torch.tensor([[0.95, 0.8, 0.2, 0.05]])
    # present: 0.95 -> 0, (0.9 - 0.8)^2 = 0.01; absent: 0.5 * 0.1^2 = 0.005, 0.05 -> 0
    assert torch.allclose(margin_loss(lengths, torch.tensor([[0, 1]])), torch.tensor([0.015]), atol=1e-6)
    assert torch.allclose(margin_loss(lengths, torch.tensor([[1, 0]])), torch.tensor([0.015]), atol=1e-6)


def test_two_digit_reconstruction_losses_are_summed_and_shapes_must_match():
    reconstruction = torch.zeros(1, 2, 1, 2, 2)
    singles = torch.zeros(1, 2, 1, 2, 2)
    singles[0, 0, 0, 0, 0], singles[0, 1, 0, 1, 1] = 1.0, 0.5  # SSE 1.0 for the first digit, 0.25 for the second
    assert torch.allclose(reconstruction_loss(reconstruction, singles), torch.tensor([1.25]))
    with pytest.raises(ValueError, match="differ in shape"):  # the composite (B, 1, H, W) is not the target
        reconstruction_loss(reconstruction, torch.zeros(2, 1, 2, 2))
