"""The fast training path: how a step is run on each device, with the paper's math unchanged.

    fast = FastPath()                      # what `python -m capsviz train` uses by default
    fast.prepare(model, device)            # the convolutions' training layers and memory formats
    optimizer = fast.optimizer(model.parameters(), lr=1e-3)
    with fast.precision(device):           # TF32 on CUDA, for forward, backward and step
        with fast.autocast(device):        # bf16 on CUDA, forward only
            out = model(fast.input(x), labels=labels)
        ...

Each field is one speed choice, for one device, that leaves the outputs unchanged (what each
does and why: docs/architecture.md; timings: `python -m capsviz.bench`). `PLAIN` turns them
all off: tests/test_fastpath.py checks both give the same outputs and gradients.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from capsviz.speed import conv, memory


@dataclass(frozen=True)
class FastPath:
    channels_last: bool = True  # CUDA only: NHWC convolutions, what cuDNN's tensor cores want
    bf16: bool | None = None  # autocast of convolutions and decoder; None: on CUDA only (routing stays float32)
    compile: bool = False  # torch.compile of model + loss: fused routing, paid for by a compile at start
    fused_adam: bool = True
    tf32: bool = True  # CUDA only, and only inside precision(): other code keeps PyTorch's defaults
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
