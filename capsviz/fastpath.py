"""The fast training path: how a step is run on each device, with the paper's math unchanged.

    fast = FastPath()                      # what `python -m capsviz train` uses by default
    fast.prepare(model, device)            # memory formats of the convolutions
    optimizer = fast.optimizer(model.parameters(), lr=1e-3)
    with fast.precision(device):           # TF32 on CUDA, for forward, backward and step
        with fast.autocast(device):        # bf16 on CUDA, forward only
            out = model(fast.input(x), labels=labels)
        ...

What it changes, and why (timings: `python -m capsviz.bench`):
- channels_last (NHWC) convolutions on CUDA, where cuDNN's tensor-core kernels want it.
  The CPU keeps NCHW: there conv1 runs as im2col (faster than oneDNN's NCHW and NHWC
  kernels) and PrimaryCaps' gradients as stride-1 convolutions (faster than oneDNN's NCHW
  ones) (`capsviz.conv`; `python -m capsviz.bench --sections kernels` times all four).
- bf16 autocast on CUDA for the convolutions and the decoder. Routing always runs in
  float32 (`DigitCaps` turns autocast off): couplings are softmaxes of agreements summed
  over 1152 votes. Off on the CPU, where AVX2 has no bf16 arithmetic.
- TF32 matmuls and convolutions on CUDA, switched on only inside `precision()`, so other
  code in the process (the plain path, the reference, the app) keeps PyTorch's defaults;
  Adam with fused=True (one kernel for all parameters).
- `torch.compile` of the model + loss on request (`--compile`): it fuses the routing's
  element-wise work but costs a compile at start; the benchmark measures both.
- On the CPU, malloc keeps freed memory for the next step instead of returning it to the
  kernel and page-faulting it back (`capsviz.memory`, entered by `train` around its loop).
Not part of this class but of the same path: MNIST stays on the device as uint8 and is
shifted there (`capsviz.data`), routing runs as batched matmuls over one parent-major
copy of the votes (`capsviz.routing`), and on the CPU the convolutions train through
`capsviz.conv` (im2col for conv1, stride-1 convolutions for PrimaryCaps' gradients) on
either path.

`PLAIN` turns all of it off (PyTorch's defaults): tests/test_fastpath.py checks both give the
same outputs and gradients on the same weights and inputs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from capsviz import memory


@dataclass(frozen=True)
class FastPath:
    channels_last: bool = True
    bf16: bool | None = None  # None: on CUDA only
    compile: bool = False
    fused_adam: bool = True
    tf32: bool = True  # CUDA only
    retain_memory: bool = True  # CPU only, glibc only (capsviz.memory)

    def uses_bf16(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.bf16 is None else self.bf16

    def uses_channels_last(self, device: torch.device) -> bool:
        return self.channels_last and device.type == "cuda"

    def prepare(self, model: nn.Module, device: torch.device) -> None:
        """On CUDA, put the convolution weights (only those) into channels_last."""
        if not self.uses_channels_last(device):
            return
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
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

    def retained_memory(self, device: torch.device):
        """On the CPU, keep freed blocks in the heap while inside (see `capsviz.memory`)."""
        if device.type != "cpu" or not self.retain_memory:
            return contextlib.nullcontext(False)
        return memory.retained_memory()

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images in the memory format `prepare` gave conv1 on x's device."""
        return x.contiguous(memory_format=torch.channels_last) if self.uses_channels_last(x.device) else x

    def autocast(self, device: torch.device):
        if not self.uses_bf16(device):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def optimizer(self, params, lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=lr, fused=self.fused_adam or None)

    def describe(self, device: torch.device) -> str:
        parts = ["bf16 autocast" if self.uses_bf16(device) else "float32"]
        if self.uses_channels_last(device):
            parts.append("channels_last")
        if self.compile:
            parts.append("torch.compile")
        if self.fused_adam:
            parts.append("fused Adam")
        if self.tf32 and device.type == "cuda":
            parts.append("TF32")
        if self.retain_memory and device.type == "cpu" and memory.supported():
            parts.append("freed memory kept")
        return ", ".join(parts)


FAST = FastPath()
PLAIN = FastPath(channels_last=False, bf16=False, compile=False, fused_adam=False, tf32=False, retain_memory=False)
