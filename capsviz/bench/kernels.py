"""The two layer-level choices of the CPU fast path, each timed against what it replaces.

- PrimaryCaps weight gradient (batch B, 256 -> 256 channels, 9x9, stride 2, 20x20 input):
  oneDNN's convolution backward against `capsviz.conv.polyphase_weight_grad`.
- conv1 forward + backward (1 -> 256 channels, 9x9, 28x28 input, ReLU): NCHW against
  channels_last (NHWC), as `capsviz.fastpath` sets it on the CPU.
Alternating rounds, median of each; on the device given.
"""

from __future__ import annotations

import torch
from torch import nn

from capsviz.bench.timing import seconds
from capsviz.conv import polyphase_weight_grad


def kernel_latency(device: torch.device, *, batch_size: int = 128, repeat: int = 5) -> dict:
    torch.manual_seed(0)
    features = torch.randn(batch_size, 256, 20, 20, device=device)  # (B, 256, 20, 20) conv1 output
    weight = 0.01 * torch.randn(256, 256, 9, 9, device=device)
    grad_y = torch.randn(batch_size, 256, 6, 6, device=device)  # (B, 256, 6, 6) PrimaryCaps output grad
    stride, padding, dilation = [2, 2], [0, 0], [1, 1]

    def onednn_weight_grad():
        return torch.ops.aten.convolution_backward(
            grad_y, features, weight, None, stride, padding, dilation, False, [0, 0], 1, [False, True, False]
        )[1]

    def polyphase():
        return polyphase_weight_grad(features, grad_y, 9, 2)

    conv1 = nn.Conv2d(1, 256, 9).to(device)
    conv1_nhwc = nn.Conv2d(1, 256, 9).to(device).to(memory_format=torch.channels_last)
    x = torch.rand(batch_size, 1, 28, 28, device=device)
    grad_features = torch.randn(batch_size, 256, 20, 20, device=device)

    def conv1_step(layer, inputs):
        def run():
            torch.relu(layer(inputs)).contiguous().backward(grad_features)

        return run

    pairs = {
        "primarycaps_weight_grad": {"oneDNN": onednn_weight_grad, "polyphase": polyphase},
        "conv1_forward_backward": {
            "NCHW": conv1_step(conv1, x),
            "NHWC": conv1_step(conv1_nhwc, x.contiguous(memory_format=torch.channels_last)),
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
