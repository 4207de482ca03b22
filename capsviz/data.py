"""MNIST as uint8 tensors, the data-root rule, and the paper's 2-pixel shift augmentation.

Data root: `--data-root`, else the CAPSVIZ_DATA environment variable, else a per-user
cache folder (~/.cache/capsviz, or $XDG_CACHE_HOME/capsviz). torchvision downloads
MNIST there when the machine is online; offline, copy the original archives into
<root>/MNIST/raw first and torchvision verifies and extracts them.
"""

from __future__ import annotations

import errno
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

ENV_VAR = "CAPSVIZ_DATA"
SHIFT = 2  # pixels, the paper's only augmentation
MNIST_TEST_IMAGES = 10_000  # what a shipped model is measured on
MNIST_TRAIN_IMAGES = 60_000


class DataUnavailableError(RuntimeError):
    """MNIST is not in the data root and could not be downloaded."""


def default_data_root(data_root: str | os.PathLike | None = None) -> Path:
    if data_root:
        return Path(data_root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "capsviz"


@dataclass
class Split:
    """images: (N, 28, 28) uint8, labels: (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.images[:n], self.labels[:n])


def load_mnist(data_root: str | os.PathLike | None = None, *, train: bool) -> Split:
    """Load one MNIST split, downloading it if needed; a clear error when that fails."""
    from torchvision.datasets import MNIST  # imported here: torchvision is slow to import

    root = default_data_root(data_root)
    try:
        dataset = MNIST(str(root), train=train, download=True)
    except Exception as exc:  # URLError, RuntimeError("Error downloading ..."), OSError
        problem = _diagnose(root / "MNIST" / "raw", exc)
        if problem:
            raise DataUnavailableError(f"MNIST could not be loaded: {problem}") from exc
        raise DataUnavailableError(
            f"MNIST is not in {root / 'MNIST'} and could not be downloaded ({exc.__class__.__name__}). "
            f"Fix: connect to the internet, or copy the four original MNIST archives "
            f"(train-images-idx3-ubyte.gz, ...) into {root / 'MNIST' / 'raw'}, "
            f"or point --data-root / ${ENV_VAR} at a folder that has them."
        ) from exc
    return Split(dataset.data.contiguous(), dataset.targets.long())


def _diagnose(raw: Path, exc: BaseException) -> str | None:
    """Name the damaged file or the read-only folder behind a failed load, with the fix; None when
    MNIST is simply not there."""
    from torchvision.datasets import MNIST
    from torchvision.datasets.utils import check_integrity

    for archive_name, md5 in MNIST.resources:
        archive = raw / archive_name
        unpacked = archive.with_suffix("")
        if unpacked.is_file():
            problem = _idx_problem(unpacked)
            if problem:
                return f"{unpacked} is damaged ({problem}). Fix: delete it; it is unpacked again from {archive.name}"
        elif archive.is_file() and not check_integrity(str(archive), md5):
            return f"{archive} is damaged (its checksum is not MNIST's). Fix: replace it with the original archive"
    if isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EROFS):
        return (
            f"{raw} is read-only, so the archives in it cannot be unpacked. Fix: make it writable, "
            f"or unpack them yourself there (gunzip -k {raw}/*.gz)"
        )
    return None


def _idx_problem(path: Path) -> str | None:
    """Why an unpacked MNIST (IDX) file is unusable, or None: its size must be what its header says."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(16)
    magic = int.from_bytes(head[:4], "big") if len(head) >= 4 else 0
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3) or len(head) < 4 + 4 * ndim:
        return f"not an MNIST file ({size} bytes)"
    expected = 4 + 4 * ndim + math.prod(struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim]))
    return None if size == expected else f"truncated: {size} bytes, its header says {expected}"


def to_float(images: torch.Tensor) -> torch.Tensor:
    """(B, 28, 28) uint8 -> (B, 1, 28, 28) float in [0, 1]."""
    return images.unsqueeze(1).float().div_(255.0)


def random_shift(
    images: torch.Tensor, max_shift: int = SHIFT, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by up to `max_shift` pixels in x and y, zero padded: (B, H, W) -> (B, H, W).

    Vectorised on the images' device: pad once, then gather a per-example window.
    """
    b, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)  # (B, H+2s, W+2s)
    offsets = torch.randint(
        0, 2 * max_shift + 1, (2, b), generator=generator, device=generator.device if generator else "cpu"
    ).to(images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W)


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    shard: tuple[int, int] = (0, 1),
):
    """Yield (images uint8 (b, 28, 28), labels (b,)) index batches over a split on any device.

    shard = (rank, world size): this process's share of the (identically shuffled) order,
    the same length on every rank so data-parallel steps stay in lockstep.
    """
    n = len(split)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(split.labels.device)
    else:
        order = torch.arange(n, device=split.labels.device)
    rank, world = shard
    if world > 1:
        order = order[rank::world][: n // world]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]
