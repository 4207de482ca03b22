"""Convolutions whose training passes run faster on the CPU, with nn.Conv2d's parameters and math.

PrimaryCaps is a 9x9 convolution with stride 2 over 256 channels: nearly all of a CapsNet's
arithmetic. oneDNN runs its two gradients slower than the same arithmetic written as
stride-1 convolutions over the input's s*s phases (every s-th row and column, starting at
py, px). The kernel taps w[:, :, py::s, px::s] only ever meet phase (py, px), so

    grad_w[o, i, py::s, px::s] = sum_b  x[b, i, py::s, px::s]  (correlated with)  grad_y[b, o]
    grad_x[b, i, py::s, px::s] = grad_y[b]  (transposed-convolved with)  w[:, i, py::s, px::s]

The first is a stride-1 convolution with the batch as the contracted channel dimension:
input (I, B, H/s, W/s), kernel (O, B, Ho, Wo) -> (I, O, taps, taps); the second is a
stride-1 transposed convolution per phase. conv1 (one input channel) is faster still as
im2col: unfold the 9x9 patches, one batched matmul.

The values are those of nn.Conv2d up to float rounding (tests/test_conv.py); only the
speed differs: `python -m capsviz.bench --sections kernels` times each against oneDNN.
Elsewhere (CUDA, CPU autocast, inference, frozen weights) both layers are a plain nn.Conv2d.
Models are written with nn.Conv2d; `swap_in(model)` (called by `capsviz.speed.fastpath` on the CPU)
gives each convolution that qualifies its faster class, keeping its parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def polyphase_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """x (B, I, H, W), grad_y (B, O, Ho, Wo) of a valid stride-`stride` conv -> grad_w (O, I, k, k)."""
    out_channels, in_channels, out_h, out_w = grad_y.shape[1], x.shape[1], grad_y.shape[2], grad_y.shape[3]
    grad_w = x.new_empty(out_channels, in_channels, kernel, kernel)
    grad_kernel = grad_y.transpose(0, 1)  # (O, B, Ho, Wo): the batch is the contracted "channel"
    for py in range(min(stride, kernel)):
        for px in range(min(stride, kernel)):
            taps_y, taps_x = len(range(py, kernel, stride)), len(range(px, kernel, stride))
            # the part of the phase the output windows reach, so the result is exactly (ty, tx) taps
            phase = x[:, :, py::stride, px::stride][:, :, : out_h + taps_y - 1, : out_w + taps_x - 1]
            taps = F.conv2d(phase.transpose(0, 1), grad_kernel)  # (I, B, .., ..) * (O, B, Ho, Wo) -> (I, O, ty, tx)
            grad_w[:, :, py::stride, px::stride] = taps.transpose(0, 1)
    return grad_w


def polyphase_input_grad(
    grad_y: torch.Tensor, weight: torch.Tensor, input_size: tuple[int, int], stride: int
) -> torch.Tensor:
    """grad_y (B, O, Ho, Wo), weight (O, I, k, k) of a valid stride-`stride` conv -> grad_x (B, I, H, W)."""
    batch, in_channels, kernel = grad_y.shape[0], weight.shape[1], weight.shape[-1]
    height, width = input_size
    allocate = grad_y.new_zeros if stride > kernel else grad_y.new_empty  # phases no tap meets stay zero
    grad_x = allocate(batch, in_channels, height, width)
    for py in range(min(stride, kernel)):
        for px in range(min(stride, kernel)):
            phase = grad_x[:, :, py::stride, px::stride]  # (B, I, H/s, W/s), a view
            taps = weight[:, :, py::stride, px::stride].contiguous()  # (O, I, ty, tx)
            part = F.conv_transpose2d(grad_y, taps)  # (B, I, Ho + ty - 1, Wo + tx - 1), fits in the phase
            h, w = part.shape[-2:]
            phase[:, :, :h, :w] = part
            phase[:, :, h:].zero_()  # rows and columns no output window reaches
            phase[:, :, :h, w:].zero_()
    return grad_x


class _PolyphaseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv2d(x, weight, bias, stride=stride)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = polyphase_input_grad(grad_y, weight, x.shape[-2:], ctx.stride)
        if ctx.needs_input_grad[1]:
            grad_w = polyphase_weight_grad(x, grad_y, weight.shape[-1], ctx.stride)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None


def _trains_on_cpu(layer: nn.Conv2d, x: torch.Tensor) -> bool:
    """A training pass on the CPU without autocast, through a square, unpadded, ungrouped conv."""
    square = layer.kernel_size[0] == layer.kernel_size[1] and layer.stride[0] == layer.stride[1]
    plain_layout = layer.padding == (0, 0) and layer.dilation == (1, 1) and layer.groups == 1
    training = torch.is_grad_enabled() and layer.weight.requires_grad
    batched = x.dim() == 4  # nn.Conv2d also takes one unbatched (C, H, W) image
    return x.is_cpu and batched and training and square and plain_layout and not torch.is_autocast_enabled("cpu")


class StridedConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same state dict) with polyphase gradients on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _trains_on_cpu(self, x):
            return super().forward(x)
        return _PolyphaseConv.apply(x.contiguous(), self.weight.contiguous(), self.bias, self.stride[0])


class UnfoldConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same state dict) run as im2col + one batched matmul on the CPU.

    Meant for conv1: with one input channel the unfolded patches are small (B, k*k, Ho*Wo),
    and the matmul writes the (B, O, Ho, Wo) output in the layout PrimaryCaps reads.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_trains_on_cpu(self, x) and self.stride == (1, 1)):
            return super().forward(x)
        batch, _, height, width = x.shape
        k = self.kernel_size[0]
        patches = F.unfold(x, k)  # (B, C*k*k, Ho*Wo)
        weight = self.weight.flatten(1).expand(batch, -1, -1)  # (B, O, C*k*k), the same matrix for every image
        if self.bias is None:
            out = torch.bmm(weight, patches)  # (B, O, Ho*Wo)
        else:
            out = torch.baddbmm(self.bias.view(1, -1, 1), weight, patches)  # (B, O, Ho*Wo)
        return out.view(batch, self.out_channels, height - k + 1, width - k + 1)


def training_layer(conv: nn.Module) -> type[nn.Conv2d] | None:
    """The faster CPU training class for a plain nn.Conv2d, or None: im2col for a stride-1 conv
    over one channel (conv1), polyphase gradients for a strided one (PrimaryCaps)."""
    if type(conv) is not nn.Conv2d or conv.kernel_size[0] != conv.kernel_size[1]:
        return None
    if conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1 or conv.stride[0] != conv.stride[1]:
        return None
    if conv.stride == (1, 1):
        return UnfoldConv2d if conv.in_channels == 1 else None
    return StridedConv2d


def swap_in(model: nn.Module) -> list[str]:
    """Give every qualifying nn.Conv2d of `model` its faster class, in place; returns their names.

    Only the class changes: the same parameter objects, the same state dict keys, the same values.
    """
    swapped = []
    for name, module in model.named_modules():
        layer = training_layer(module)
        if layer is not None:
            module.__class__ = layer  # a subclass that adds no state: parameters and buffers stay as they are
            swapped.append(name)
    return swapped
