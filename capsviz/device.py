"""The device rule, in one place: which torch device a name means, and the error when it is absent.

    from capsviz.device import resolve_device
    device = resolve_device("auto")   # cuda when torch sees a GPU, else cpu

The trainer, the distributed launcher, the benchmark, the CLI and the app all resolve through it.
"""

from __future__ import annotations

import platform

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


def resolve_device(name: str = "auto") -> torch.device:
    """auto: cuda when available, else cpu. A cuda name without a GPU raises DeviceUnavailableError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceUnavailableError("device 'cuda' was asked for, but torch sees no CUDA GPU; use auto or cpu")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({_cpu_name()}, {threads} thread{'s' if threads != 1 else ''})"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
