"""One input's full routing trace as a safetensors file: what the app's download and
`python -m capsviz trace IMAGE --out FILE` write.

    data = to_bytes(ray, predicted=3, checkpoint="pretrained/capsnet_mnist.safetensors")
    arrays, metadata = load(data)            # numpy arrays by key, and the string metadata

Keys and shapes (float32; N = 1152 primary capsules, J = 10 digits, D = 16, I = 8,
R = the routing iterations exported, H = W = 28):

    image            (H, W)      the model input, in [0, 1], after MNIST-style preprocessing
    primary          (N, I)      primary capsules u_i (squashed); n = type * 36 + row * 6 + col
    primary_lengths  (N,)        |u_i|
    votes            (N, J, D)   u_hat_j|i = W_ij u_i
    couplings        (R, N, J)   c_ij used in iteration r (softmax of logits over J)
    logits           (R, N, J)   b_ij at the start of iteration r (zeros at r = 1)
    poses            (R, J, D)   v_j at the end of iteration r
    lengths          (R, J)      |v_j| at the end of iteration r; the last row is the prediction's
    agreements       (R, N, J)   u_hat_j|i . v_j after iteration r (added to b_ij for r + 1)

The metadata (strings) says the format, the iteration count, the predicted digit, the
checkpoint and this key list. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from capsviz.analysis.xray import RoutingXray
from capsviz.checkpoint import MAX_HEADER_BYTES, refuse_shipped
from capsviz.files import atomic_write

FORMAT = "capsviz-routing-trace"
KEYS = {
    "image": "(H, W) model input in [0, 1]",
    "primary": "(N, I) primary capsules u_i, n = type*G*G + row*G + col",
    "primary_lengths": "(N,) |u_i|",
    "votes": "(N, J, D) u_hat_j|i = W_ij u_i",
    "couplings": "(R, N, J) c_ij of iteration r",
    "logits": "(R, N, J) b_ij at the start of iteration r",
    "poses": "(R, J, D) v_j after iteration r",
    "lengths": "(R, J) |v_j| after iteration r",
    "agreements": "(R, N, J) u_hat_j|i . v_j after iteration r",
}


def arrays(ray: RoutingXray) -> dict[str, np.ndarray]:
    values = {
        "image": ray.image,
        "primary": ray.primary,
        "primary_lengths": ray.primary_lengths,
        "votes": ray.votes,
        "couplings": ray.couplings,
        "logits": ray.logits,
        "poses": ray.poses,
        "lengths": ray.lengths,
        "agreements": ray.agreements,
    }
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in values.items()}


def to_bytes(ray: RoutingXray, *, predicted: int, checkpoint: str = "") -> bytes:
    metadata = {
        "format": FORMAT,
        "iterations": str(ray.iterations),
        "predicted": str(predicted),
        "checkpoint": checkpoint,
        "keys": json.dumps(KEYS),
    }
    return save_arrays(arrays(ray), metadata=metadata)


def save(path: str | Path, ray: RoutingXray, *, predicted: int, checkpoint: str = "") -> Path:
    path = Path(path)
    refuse_shipped(path, "a trace")
    atomic_write(path, to_bytes(ray, predicted=predicted, checkpoint=checkpoint))
    return path


def is_trace(path: str | Path) -> bool:
    """Whether `path` is a regular file whose safetensors header says it is a capsviz routing trace (the header
    alone is read, and nothing from a FIFO or a device)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO's opening does not wait
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len > MAX_HEADER_BYTES:
                return False
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, RecursionError):
        return False
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(metadata, dict) and metadata.get("format") == FORMAT


def load(data: bytes | str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A trace file (bytes or path) -> (arrays by key, metadata)."""
    raw = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    header_len = int.from_bytes(raw[:8], "little")
    metadata = json.loads(raw[8 : 8 + header_len]).get("__metadata__", {})
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a capsviz routing trace (format {metadata.get('format')!r})")
    return load_arrays(raw), metadata
