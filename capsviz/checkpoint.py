"""Checkpoints: safetensors weights with the model config and a card in the file's metadata.

A checkpoint rebuilds its own model (its kind and config travel inside it; `capsviz.registry`
maps the kind to classes, and a file without a kind is a CapsNet), is written
atomically (temporary file + fsync + rename), and is loaded without unpickling anything:
the header is parsed as JSON and the tensors by safetensors. Training checkpoints also
carry the optimizer state under `optimizer/...` keys so `--resume` can continue a run.

    from capsviz.checkpoint import save_checkpoint, load_checkpoint
    save_checkpoint("runs/a/last.safetensors", model, card={"test_accuracy": 0.99})
    model, card = load_checkpoint("runs/a/last.safetensors")
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from capsviz import registry

FORMAT = "capsviz-checkpoint"
VERSION = "1"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED_CHECKPOINT = PRETRAINED_DIR / "capsnet_mnist.safetensors"
OPTIMIZER_PREFIX = "optimizer/"
MAX_HEADER_BYTES = 16 * 1024 * 1024


class CheckpointError(ValueError):
    """A file that is not a usable capsviz checkpoint; the message says what is wrong."""


@dataclass
class TrainingState:
    """What `--resume` needs beyond the weights: Adam's moments and counters."""

    epoch: int
    optimizer: dict[str, torch.Tensor] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    card: dict | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    half: bool = False,
    allow_shipped: bool = False,
) -> Path:
    """Write `model` (and optionally `optimizer`) atomically; returns the path written."""
    path = Path(path)
    if path.resolve() == SHIPPED_CHECKPOINT and not allow_shipped:
        raise CheckpointError(f"refusing to overwrite the shipped checkpoint {path}")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update(_optimizer_tensors(model, optimizer))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "kind": registry.kind_of(model),
        "config": json.dumps(model.config.to_dict()),
        "card": json.dumps(card or {}),
    }
    _atomic_write(path, save_tensors(tensors, metadata=metadata))
    return path


def load_checkpoint(source: str | os.PathLike | bytes, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model from a checkpoint file (or its bytes); returns (model in eval mode, card)."""
    model, card, _ = _load(source, device)
    return model, card


def load_training_state(
    source: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict, TrainingState]:
    """Model, card and optimizer state of a training checkpoint, for `--resume`."""
    model, card, optimizer = _load(source, device)
    if not optimizer:
        raise CheckpointError(f"{source} has no optimizer state: it cannot be resumed")
    return model, card, TrainingState(epoch=int(card.get("epochs", 0)), optimizer=optimizer)


def read_card(source: str | os.PathLike | bytes) -> dict:
    """The card of a checkpoint without loading its tensors."""
    data = _read_bytes(source)
    return _parse_metadata(_read_header(data, _name(source)), _name(source))[2]


def restore_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load Adam-style per-parameter state saved by `save_checkpoint(optimizer=...)`."""
    state = optimizer.state_dict()
    names, params = zip(*model.named_parameters())
    for index, name in enumerate(names):
        entry = {
            key.rsplit("/", 1)[1]: value
            for key, value in tensors.items()
            if key.startswith(f"{OPTIMIZER_PREFIX}{name}/")
        }
        if entry:
            if "step" in entry:
                entry["step"] = entry["step"].float().reshape(())
            param = params[index]
            for key, value in entry.items():
                if key != "step" and value.shape == param.shape:  # the parameter's memory format (fused Adam)
                    entry[key] = torch.empty_like(param, dtype=torch.float32).copy_(value)
            state["state"][index] = entry
    optimizer.load_state_dict(state)


def _optimizer_tensors(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    by_param = {id(p): name for name, p in model.named_parameters()}
    out = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value):
                    tensor = value.detach().to("cpu", torch.float32).reshape(value.shape).contiguous()
                    out[f"{OPTIMIZER_PREFIX}{by_param[id(param)]}/{key}"] = tensor
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _name(source) -> str:
    return "uploaded file" if isinstance(source, (bytes, bytearray)) else str(source)


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    return path.read_bytes()


def _read_header(data: bytes, name: str) -> dict:
    """Parse the safetensors header ourselves: clear errors for foreign or truncated files."""
    if len(data) < 8:
        raise CheckpointError(f"{name} is not a safetensors file (only {len(data)} bytes)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or header_len + 8 > len(data):
        raise CheckpointError(f"{name} is not a safetensors file, or it is truncated (bad header length)")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CheckpointError(f"{name} is not a safetensors file (unexpected header)")
    data_len = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise CheckpointError(f"{name} is not a safetensors file (bad entry for tensor {key!r})")
        data_len = max(data_len, offsets[1])
    if 8 + header_len + data_len > len(data):
        raise CheckpointError(
            f"{name} is truncated: {len(data)} bytes, its header describes {8 + header_len + data_len}"
        )
    return header


def _parse_metadata(header: dict, name: str) -> tuple[str, object, dict]:
    """(kind, model config, card) from the header's metadata."""
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{name} is a safetensors file but not a capsviz checkpoint (no capsviz metadata)")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{name} has checkpoint version {meta.get('version')!r}; this capsviz reads {VERSION}")
    kind = meta.get("kind", registry.LEGACY_KIND)
    if not isinstance(kind, str) or kind not in registry.MODELS:
        raise CheckpointError(
            f"{name} holds a model of kind {kind!r}, which this capsviz does not know "
            f"(it knows {', '.join(sorted(registry.MODELS))}); a newer capsviz may read it"
        )
    try:
        config = registry.load_config(kind, json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{name} has an unreadable model config: {exc}") from None
    try:
        card = json.loads(meta.get("card", "{}"))
    except ValueError:
        card = None
    if not isinstance(card, dict):
        raise CheckpointError(f"{name} has an unreadable card (its metadata 'card' is not a JSON object)")
    return kind, config, card


def _load(source, device) -> tuple[nn.Module, dict, dict[str, torch.Tensor]]:
    name = _name(source)
    data = _read_bytes(source)
    kind, config, card = _parse_metadata(_read_header(data, name), name)
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{name} could not be read as safetensors: {exc}") from None
    try:
        model = registry.classes(kind)[0](config)
    except Exception as exc:
        raise CheckpointError(f"{name} describes a model that cannot be built: {exc}") from None
    optimizer = {k: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{name} does not match its model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, value in weights.items():
        if value.shape != expected[key].shape:
            raise CheckpointError(
                f"{name}: tensor {key} has shape {tuple(value.shape)}, the model needs {tuple(expected[key].shape)}"
            )
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise CheckpointError(f"{name}: tensor {key} is not finite floating point")
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.to(device).eval(), card, optimizer
