"""The fast training path: how a step is run on each device, with the paper's math unchanged.

    fast = FastPath()                      # what `python -m capsviz train` uses by default
    fast.prepare(model, device)            # the convolutions' training layers and memory formats
    optimizer = fast.optimizer(model.parameters(), lr=1e-3)
    with fast.precision(device):           # TF32 on CUDA, for forward, backward and step
        with fast.autocast(device):        # bf16 on CUDA, forward only
            out = model(fast.input(x), labels=labels)
        ...

What it changes, and why (timings: `python -m capsviz.bench`):
- On the CPU, conv1 and PrimaryCaps train through `capsviz.speed.conv` (im2col for conv1, stride-1
  convolutions for PrimaryCaps' gradients, both faster than oneDNN's): `prepare` swaps those
  classes into the model, whose own layers are plain nn.Conv2d (same parameters, same state dict).
- channels_last (NHWC) convolutions on CUDA, where cuDNN's tensor-core kernels want it.
  The CPU keeps NCHW, the layout `capsviz.speed.conv`'s layers are fastest in
  (`python -m capsviz.bench --sections kernels` times them against oneDNN's NCHW and NHWC).
- bf16 autocast on CUDA for the convolutions and the decoder. Routing's tensors stay
  float32 (`DigitCaps` turns autocast off): couplings are softmaxes of agreements summed
  over 1152 votes. Off on the CPU, where AVX2 has no bf16 arithmetic.
- TF32 matmuls and convolutions on CUDA, switched on only inside `precision()`, so other
  code in the process (the plain path, the reference, the app) keeps PyTorch's defaults.
  Inside it, routing's float32 matmuls use TF32 too (10-bit mantissa products, float32 sums).
- Adam with fused=True (one kernel for all parameters).
- `torch.compile` of the model + loss on request (`--compile`): it fuses the routing's
  element-wise work but costs a compile at start; the benchmark measures both.
- On the CPU, malloc keeps freed memory for the next step instead of returning it to the
  kernel and page-faulting it back (`capsviz.speed.memory`, entered by `train` around its loop).
Not part of this class but of the same path on both settings: MNIST stays on the device as
uint8 and is shifted there (`capsviz.data`), and routing runs as batched matmuls over one
parent-major copy of the votes (`capsviz.routing`).

`PLAIN` turns all of it off (PyTorch's defaults, nn.Conv2d's own kernels): tests/test_fastpath.py
checks both give the same outputs and gradients on the same weights and inputs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from capsviz.speed import conv, memory


@dataclass(frozen=True)
class FastPath:
    channels_last: bool = True
    bf16: bool | None = None  # None: on CUDA only
    compile: bool = False
    fused_adam: bool = True
    tf32: bool = True  # CUDA only
    retain_memory: bool = True  # CPU only, glibc only (capsviz.speed.memory)
    cpu_convs: bool = True  # CPU only: capsviz.speed.conv's training layers

    def uses_bf16(self, device: torch.device) -> bool:
        return device.type == "cuda" if self.bf16 is None else self.bf16

    def uses_channels_last(self, device: torch.device) -> bool:
        return self.channels_last and device.type == "cuda"

    def uses_cpu_convs(self, device: torch.device) -> bool:
        return self.cpu_convs and device.type == "cpu"

    def prepare(self, model: nn.Module, device: torch.device) -> None:
        """On the CPU, swap in `capsviz.speed.conv`'s training layers; on CUDA, put the convolution
        weights (only those) into channels_last."""
        if self.uses_cpu_convs(device):
            conv.swap_in(model)
        if not self.uses_channels_last(device):
            return
        for layer in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            layer.to(memory_format=torch.channels_last)

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
        """On the CPU, keep freed blocks in the heap while inside (see `capsviz.speed.memory`)."""
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
        if self.uses_cpu_convs(device):
            parts.append("capsviz.speed.conv convolutions")
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
PLAIN = FastPath(
    channels_last=False, bf16=False, compile=False, fused_adam=False, tf32=False, retain_memory=False, cpu_convs=False
)
