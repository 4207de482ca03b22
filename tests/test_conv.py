"""capsviz.speed.conv: the CPU training convolutions give nn.Conv2d's values and gradients."""

import copy

import pytest
import torch
from torch import nn

from capsviz.losses import capsule_loss
from capsviz.model import CapsNet
from capsviz.speed.conv import StridedConv2d, UnfoldConv2d, polyphase_input_grad, polyphase_weight_grad, swap_in


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "size"),
    [((256, 32), 9, 2, 20), ((3, 5), 5, 3, 17), ((4, 6), 4, 2, 11), ((2, 3), 3, 1, 8), ((2, 3), 2, 3, 11)],
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


def test_input_gradient_against_a_hand_computed_case():
    # 3x3 kernel, stride 2 on a 6x6 input: outputs (0, 0) and (0, 1) overlap in column 2;
    # row 5 and column 5 are under no window
    weight = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    grad_y = torch.tensor([[[[1.0, 10.0], [0.0, 0.0]]]])
    grad_x = polyphase_input_grad(grad_y, weight, (6, 6), stride=2)[0, 0]
    expected = torch.zeros(6, 6)
    expected[:3, :3] += weight[0, 0]
    expected[:3, 2:5] += 10 * weight[0, 0]
    assert torch.equal(grad_x, expected)


def test_non_square_input_without_bias():
    torch.manual_seed(0)
    plain = nn.Conv2d(3, 4, 3, stride=2, bias=False)
    fast = StridedConv2d(3, 4, 3, stride=2, bias=False)
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 9, 12)
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad_y = torch.randn_like(plain(x))
    plain(x_plain).backward(grad_y)
    fast(x_fast).backward(grad_y)
    assert torch.allclose(fast.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(x_fast.grad, x_plain.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("channels", "bias", "channels_last"), [(1, True, False), (3, False, False), (3, True, True)])
def test_unfold_conv_matches_nn_conv2d_with_gradients(channels, bias, channels_last):
    torch.manual_seed(0)
    plain = nn.Conv2d(channels, 8, 5, bias=bias)
    fast = UnfoldConv2d(channels, 8, 5, bias=bias)
    fast.load_state_dict(plain.state_dict())
    if channels_last:  # as FastPath.prepare leaves it for CUDA, on a model later used on the CPU
        fast.to(memory_format=torch.channels_last)
    x = torch.rand(3, channels, 12, 10)
    out = fast(x)
    assert out.grad_fn.name() == "ViewBackward0"  # im2col ran, not the fallback
    grad = torch.randn_like(out)
    out.backward(grad)
    plain(x).backward(grad)
    assert torch.allclose(out, plain(x), atol=1e-5)
    assert torch.allclose(fast.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-5)
    if bias:
        assert torch.allclose(fast.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # inference is the plain convolution
        assert torch.equal(fast(x), nn.functional.conv2d(x, fast.weight, fast.bias))


def test_capsnet_trains_through_them_as_through_nn_conv2d():
    """The whole model's loss and every gradient, against a copy whose convolutions stay nn.Conv2d."""
    torch.manual_seed(0)
    model = CapsNet()
    reference = copy.deepcopy(model)
    params = [p for p in model.parameters()]
    assert swap_in(model) == ["conv1", "primary.conv"]
    assert type(model.conv1) is UnfoldConv2d and type(model.primary.conv) is StridedConv2d
    assert type(reference.conv1) is type(reference.primary.conv) is nn.Conv2d  # the paper's model is plain
    assert [p for p in model.parameters()] == params and model.state_dict().keys() == reference.state_dict().keys()
    x, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 3, 7, 9])
    losses = {}
    for net in (model, reference):
        out = net(x, labels=labels)
        losses[net] = capsule_loss(out, x, labels)
        losses[net].backward()
    assert torch.allclose(losses[model], losses[reference], atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad - q.grad).norm() <= 1e-4 * q.grad.norm(), name


def test_same_parameters_and_plain_forward_without_grad():
    layer = StridedConv2d(4, 8, 3, stride=2)
    assert list(layer.state_dict()) == list(nn.Conv2d(4, 8, 3, stride=2).state_dict())
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        assert torch.equal(layer(x), nn.functional.conv2d(x, layer.weight, layer.bias, stride=2))


@pytest.mark.parametrize("layer_type", [StridedConv2d, UnfoldConv2d])
@pytest.mark.parametrize("case", ["frozen weight", "cpu autocast", "padding", "groups"])
def test_falls_back_to_the_plain_convolution_where_the_rewrite_does_not_apply(layer_type, case):
    stride = 2 if layer_type is StridedConv2d else 1
    padding, groups = (1 if case == "padding" else 0), (2 if case == "groups" else 1)
    layer = layer_type(4, 8, 3, stride=stride, padding=padding, groups=groups)
    layer.weight.requires_grad_(case != "frozen weight")
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "cpu autocast"):
        out = layer(x)
    assert out.grad_fn.name() == "ConvolutionBackward0", case


def test_unfold_conv_falls_back_for_strided_convolutions():
    layer = UnfoldConv2d(1, 4, 3, stride=2)
    assert layer(torch.rand(2, 1, 9, 9)).grad_fn.name() == "ConvolutionBackward0"


@pytest.mark.parametrize("layer", [UnfoldConv2d(2, 4, 3), StridedConv2d(2, 4, 3, stride=2)])
def test_an_unbatched_image_takes_the_plain_convolution(layer):
    x = torch.rand(2, 9, 9)  # (C, H, W), which nn.Conv2d accepts
    out = layer(x)
    assert torch.equal(out, nn.functional.conv2d(x, layer.weight, layer.bias, stride=layer.stride))
    out.sum().backward()  # the rewrites would fail here on a 3-D input
    assert layer.weight.grad is not None


def test_only_plain_unpadded_convolutions_are_swapped():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),  # conv1-like: im2col
        nn.Conv2d(4, 4, 3, stride=2),  # PrimaryCaps-like: polyphase gradients
        nn.Conv2d(4, 4, 3),  # stride 1 over several channels: oneDNN is as fast
        nn.Conv2d(4, 4, 3, stride=2, padding=1),  # padded: the plain path
        UnfoldConv2d(1, 4, 3),  # already swapped
    )
    assert swap_in(model) == ["0", "1"]
    assert [type(m) for m in model] == [UnfoldConv2d, StridedConv2d, nn.Conv2d, nn.Conv2d, UnfoldConv2d]
