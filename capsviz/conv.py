"""A strided Conv2d whose weight gradient runs as a few stride-1 convolutions on the CPU.

PrimaryCaps is a 9x9 convolution with stride 2 over 256 channels: nearly all of a CapsNet's
arithmetic. oneDNN's weight gradient for stride 2 is slower than the same arithmetic run as
stride-1 convolutions, which the gradient can be written as:
split the input into its s*s phases (every s-th row and column, starting at py, px); the
kernel taps w[:, :, py::s, px::s] only ever see phase (py, px), so

    grad_w[o, i, py::s, px::s] = sum_b  x[b, i, py::s, px::s]  (correlated with)  grad_y[b, o]

which is a stride-1 convolution with the batch as the contracted channel dimension:
input (I, B, H/s, W/s), kernel (O, B, Ho, Wo) -> (I, O, taps, taps). The values are the
same up to float rounding (tests/test_conv.py); only the speed differs: `python -m
capsviz.bench --sections kernels` times both on the CPU. Elsewhere
(CUDA, CPU autocast, inference, frozen weights) the layer is a plain nn.Conv2d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def polyphase_weight_grad(x: torch.Tensor, grad_y: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """x (B, I, H, W), grad_y (B, O, Ho, Wo) of a valid stride-`stride` conv -> grad_w (O, I, k, k)."""
    out_channels, in_channels = grad_y.shape[1], x.shape[1]
    grad_w = x.new_empty(out_channels, in_channels, kernel, kernel)
    grad_kernel = grad_y.transpose(0, 1)  # (O, B, Ho, Wo): the batch is the contracted "channel"
    for py in range(stride):
        for px in range(stride):
            phase = x[:, :, py::stride, px::stride].transpose(0, 1)  # (I, B, H/s, W/s)
            full = F.conv2d(phase, grad_kernel)  # (I, O, H/s - Ho + 1, W/s - Wo + 1)
            taps_y, taps_x = len(range(py, kernel, stride)), len(range(px, kernel, stride))
            grad_w[:, :, py::stride, px::stride] = full[:, :, :taps_y, :taps_x].transpose(0, 1)  # (O, I, ty, tx)
    return grad_w


class _PolyphaseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return F.conv2d(x, weight, bias, stride=stride)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors
        s = ctx.stride
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_y, x, weight, None, [s, s], [0, 0], [1, 1], False, [0, 0], 1, [True, False, False]
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = polyphase_weight_grad(x, grad_y, weight.shape[-1], s)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None


class StridedConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same state dict) with the polyphase weight gradient on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        square = self.kernel_size[0] == self.kernel_size[1] and self.stride[0] == self.stride[1]
        plain_layout = self.padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1
        training = torch.is_grad_enabled() and self.weight.requires_grad
        if not (x.is_cpu and training and square and plain_layout) or torch.is_autocast_enabled("cpu"):
            return super().forward(x)
        return _PolyphaseConv.apply(x.contiguous(), self.weight.contiguous(), self.bias, self.stride[0])
