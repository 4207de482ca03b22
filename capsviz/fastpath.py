"""The fast training path: how a step is run on each device, with the paper's math unchanged.

    fast = FastPath()                      # what `python -m capsviz train` uses by default
    fast.prepare(model, device)            # memory formats of the convolutions
    optimizer = fast.optimizer(model.parameters(), lr=1e-3)
    with fast.precision(device):           # TF32 on CUDA, for forward, backward and step
        with fast.autocast(device):        # bf16 on CUDA, forward only
            out = model(fast.input(x), labels=labels)
        ...

What it changes, and why (timings: `python -m capsviz.bench`):
- channels_last (NHWC) convolutions: cuDNN's tensor-core kernels want it on CUDA; on the
  CPU only conv1 gains (oneDNN is much faster NHWC for its single input channel;
  `python -m capsviz.bench --sections kernels`), while the 256-channel PrimaryCaps
  convolution stays NCHW, where its polyphase weight gradient runs.
- bf16 autocast on CUDA for the convolutions and the decoder. Routing always runs in
  float32 (`DigitCaps` turns autocast off): couplings are softmaxes of agreements summed
  over 1152 votes. Off on the CPU, where AVX2 has no bf16 arithmetic.
- TF32 matmuls and convolutions on CUDA, switched on only inside `precision()`, so other
  code in the process (the plain path, the reference, the app) keeps PyTorch's defaults;
  Adam with fused=True (one kernel for all parameters).
- `torch.compile` of the model + loss on request (`--compile`): it fuses the routing's
  element-wise work but costs a compile at start; the benchmark measures both.
Not part of this class but of the same path: MNIST stays on the device as uint8 and is
shifted there (`capsviz.data`), routing runs as batched matmuls over one parent-major
copy of the votes (`capsviz.routing`), and the PrimaryCaps weight gradient is computed
by stride-1 convolutions on the CPU (`capsviz.conv`).

`PLAIN` turns all of it off (PyTorch's defaults): tests/test_fastpath.py checks both give the
same outputs and gradients on the same weights and inputs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FastPath:
    channels_last: bool = True
    bf16: bool | None = None  # None: on CUDA only
    compile: bool = False
    fused_adam: bool = True
    tf32: bool = True  # CUDA only

    def uses_bf16(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.bf16 is None else self.bf16

    def prepare(self, model: nn.Module, device: torch.device) -> None:
        """Put the convolution weights (only those) into the memory format this device prefers."""
        if not self.channels_last:
            return
        convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        for conv in convolutions if device.type == "cuda" else [model.conv1]:
            conv.to(memory_format=torch.channels_last)

    @contextlib.contextmanager
    def precision(self, device: torch.device):
        """TF32 matmuls and convolutions on CUDA while inside; the previous flags after."""
        if device.type != "cuda" or not self.tf32:
            yield
            return
        saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images in the memory format conv1 was given."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self, device: torch.device):
        if not self.uses_bf16(device):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def optimizer(self, params, lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=lr, fused=self.fused_adam or None)

    def describe(self, device: torch.device) -> str:
        parts = ["bf16 autocast" if self.uses_bf16(device) else "float32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("torch.compile")
        if self.fused_adam:
            parts.append("fused Adam")
        if self.tf32 and device.type == "cuda":
            parts.append("TF32")
        return ", ".join(parts)


FAST = FastPath()
PLAIN = FastPath(channels_last=False, bf16=False, compile=False, fused_adam=False, tf32=False)
