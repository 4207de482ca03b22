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
