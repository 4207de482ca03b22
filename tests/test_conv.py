import pytest
import torch
from torch import nn

from capsviz.conv import StridedConv2d, polyphase_weight_grad


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "size"),
    [((256, 32), 9, 2, 20), ((3, 5), 5, 3, 17), ((4, 6), 4, 2, 11), ((2, 3), 3, 1, 8)],
)
def test_gradients_match_nn_conv2d(channels, kernel, stride, size):
    torch.manual_seed(0)
    plain = nn.Conv2d(*channels, kernel, stride=stride)
    fast = StridedConv2d(*channels, kernel, stride=stride)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(3, channels[0], size, size)
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad_y = torch.randn_like(plain(x))
    plain(x_plain).backward(grad_y)
    out = fast(x_fast)
    out.backward(grad_y)
    assert out.grad_fn.name().endswith("_PolyphaseConvBackward")  # the fast path ran, not the fallback
    assert torch.allclose(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)
    assert torch.allclose(fast.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(x_fast.grad, x_plain.grad, rtol=1e-5, atol=1e-5)


def test_weight_gradient_against_a_hand_computed_case():
    # one input channel, one output channel, 3x3 kernel, stride 2 on a 5x5 input: 2x2 outputs
    x = torch.arange(25.0).view(1, 1, 5, 5)
    grad_y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # only output (0, 0) matters
    grad_w = polyphase_weight_grad(x, grad_y, kernel=3, stride=2)
    assert torch.equal(grad_w[0, 0], x[0, 0, :3, :3])  # d y00 / d w = the window under output (0, 0)


def test_same_parameters_and_plain_forward_without_grad():
    layer = StridedConv2d(4, 8, 3, stride=2)
    assert list(layer.state_dict()) == list(nn.Conv2d(4, 8, 3, stride=2).state_dict())
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        assert torch.equal(layer(x), nn.functional.conv2d(x, layer.weight, layer.bias, stride=2))


@pytest.mark.parametrize("case", ["frozen weight", "cpu autocast", "padding", "groups"])
def test_falls_back_to_the_plain_convolution_where_polyphase_does_not_apply(case):
    layer = StridedConv2d(4, 8, 3, stride=2, padding=1 if case == "padding" else 0, groups=2 if case == "groups" else 1)
    layer.weight.requires_grad_(case != "frozen weight")
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "cpu autocast"):
        out = layer(x)
    assert out.grad_fn.name() == "ConvolutionBackward0", case
