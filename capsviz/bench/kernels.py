"""The layer-level choices of the CPU training path (`capsviz.speed.conv`), each timed against oneDNN.

- PrimaryCaps weight gradient and input gradient (batch B, 256 -> 256 channels, 9x9,
  stride 2, 20x20 input): oneDNN's convolution backward against the polyphase versions.
- conv1 forward + backward (1 -> 256 channels, 9x9, 28x28 input, ReLU): oneDNN in NCHW and
  in channels_last (NHWC) against `UnfoldConv2d` (im2col + one batched matmul).
Alternating rounds, median of each, on the device given. The rewrites are for the CPU: on
CUDA the conv1 rows time cuDNN against itself (UnfoldConv2d falls back to nn.Conv2d there),
and the PrimaryCaps rows time the polyphase functions run on CUDA against cuDNN.
"""

from __future__ import annotations

import torch
from torch import nn

from capsviz.bench.timing import seconds
from capsviz.speed.conv import UnfoldConv2d, polyphase_input_grad, polyphase_weight_grad


def kernel_latency(device: torch.device, *, batch_size: int = 128, repeat: int = 5) -> dict:
    torch.manual_seed(0)
    features = torch.randn(batch_size, 256, 20, 20, device=device)  # (B, 256, 20, 20) conv1 output
    weight = 0.01 * torch.randn(256, 256, 9, 9, device=device)
    grad_y = torch.randn(batch_size, 256, 6, 6, device=device)  # (B, 256, 6, 6) PrimaryCaps output grad

    def library_grad(weight_grad: bool):  # oneDNN on the CPU, cuDNN on CUDA
        mask = [not weight_grad, weight_grad, False]

        def run():
            return torch.ops.aten.convolution_backward(
                grad_y, features, weight, None, [2, 2], [0, 0], [1, 1], False, [0, 0], 1, mask
            )

        return run

    conv1 = nn.Conv2d(1, 256, 9).to(device)
    conv1_nhwc = nn.Conv2d(1, 256, 9).to(device).to(memory_format=torch.channels_last)
    conv1_im2col = UnfoldConv2d(1, 256, 9).to(device)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    grad_features = torch.randn(batch_size, 256, 20, 20, device=device)

    def conv1_step(layer, inputs):
        def run():
            torch.relu(layer(inputs)).contiguous().backward(grad_features)  # PrimaryCaps reads NCHW

        return run

    pairs = {
        "primarycaps_weight_grad": {
            "library": library_grad(weight_grad=True),
            "polyphase": lambda: polyphase_weight_grad(features, grad_y, 9, 2),
        },
        "primarycaps_input_grad": {
            "library": library_grad(weight_grad=False),
            "polyphase": lambda: polyphase_input_grad(grad_y, weight, (20, 20), 2),
        },
        "conv1_forward_backward": {
            "NCHW": conv1_step(conv1, x),
            "NHWC": conv1_step(conv1_nhwc, x.contiguous(memory_format=torch.channels_last)),
            "im2col": conv1_step(conv1_im2col, x),
        },
    }
    results = {}
    for name, variants in pairs.items():
        times = {label: [] for label in variants}
        for _ in range(repeat):  # alternate, so a machine that slows down slows both
            for label, fn in variants.items():
                times[label].append(seconds(fn, device))
        results[name] = {label: sorted(t)[len(t) // 2] for label, t in times.items()}
    return results
