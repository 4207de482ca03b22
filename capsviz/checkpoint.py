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
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import load_file
from safetensors.torch import save as save_tensors
from torch import nn

from capsviz import registry
from capsviz.configs import MAX_PARAMETERS
from capsviz.files import atomic_write

FORMAT = "capsviz-checkpoint"
VERSION = "1"
# the shipped weights: inside the package once installed (a wheel), else pretrained/ of the checkout
_INSTALLED = Path(__file__).resolve().parent / "pretrained"
PRETRAINED_DIR = _INSTALLED if _INSTALLED.is_dir() else Path(__file__).resolve().parent.parent / "pretrained"
SHIPPED_CHECKPOINT = PRETRAINED_DIR / "capsnet_mnist.safetensors"
OPTIMIZER_PREFIX = "optimizer/"
MAX_HEADER_BYTES = 16 * 1024 * 1024
ADAM_REQUIRED = {"step", "exp_avg", "exp_avg_sq"}
ADAM_SLOTS = ADAM_REQUIRED | {"max_exp_avg_sq"}  # amsgrad
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}  # the float dtypes a checkpoint may hold


class CheckpointError(ValueError):
    """A file that is not a usable capsviz checkpoint, or a place one may not be written; the message says which."""


def among_shipped(path: str | os.PathLike) -> bool:
    """Whether `path` lands among the shipped models and reports (pretrained/, at any depth)."""
    return Path(path).resolve().is_relative_to(PRETRAINED_DIR.resolve())


def refuse_shipped(path: str | os.PathLike, what: str) -> None:
    """The one guard for writers other than `export`: nothing they write lands in pretrained/."""
    if among_shipped(path):
        raise CheckpointError(f"{path} is among the shipped models (pretrained/): write {what} elsewhere")


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
) -> Path:
    """Write `model` (and optionally `optimizer`) atomically; returns the path written."""
    path = Path(path)
    refuse_shipped(path, "a training checkpoint")
    atomic_write(path, checkpoint_bytes(model, card, optimizer=optimizer, half=half, name=str(path)))
    return path


def checkpoint_bytes(
    model: nn.Module,
    card: dict | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    half: bool = False,
    name: str = "the checkpoint",
) -> bytes:
    """The safetensors bytes `save_checkpoint` writes (to write together with other files, or to measure)."""
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    if optimizer is not None:
        tensors.update(_optimizer_tensors(model, optimizer))
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:  # a diverged run must not replace its last good checkpoint
        raise CheckpointError(f"refusing to write {name}: {', '.join(bad[:3])} hold non-finite values (NaN or inf)")
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "kind": registry.kind_of(model),
        "config": json.dumps(model.config.to_dict()),
        "card": json.dumps(card or {}),
    }
    return save_tensors(tensors, metadata=metadata)


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
    epochs = card.get("epochs", 0)
    if type(epochs) is not int or epochs < 0:
        raise CheckpointError(f"{source} has an unreadable card: 'epochs' is {epochs!r}, not a count of epochs")
    return model, card, TrainingState(epoch=epochs, optimizer=optimizer)


def read_card(source: str | os.PathLike | bytes) -> dict:
    """The card of a checkpoint without loading its tensors."""
    return _parse_metadata(_read_header(source), _name(source))[2]


def read_config(source: str | os.PathLike | bytes):
    """The model config of a checkpoint without loading its tensors."""
    return _parse_metadata(_read_header(source), _name(source))[1]


def restore_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load Adam-style per-parameter state saved by `save_checkpoint(optimizer=...)`.

    Every tensor is checked against its parameter first: a wrong shape would crash fused Adam.
    """
    state = optimizer.state_dict()
    names, params = zip(*model.named_parameters())
    entries: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, slot = key.removeprefix(OPTIMIZER_PREFIX).rpartition("/")
        entries.setdefault(name, {})[slot] = value
    unknown = sorted(set(entries) - set(names))
    if unknown:
        raise CheckpointError(f"optimizer state for parameters the model does not have: {unknown[:5]}")
    for index, name in enumerate(names):
        entry = entries.get(name)
        if entry:
            _check_optimizer_entry(name, entry, params[index])
            entry["step"] = entry["step"].float().reshape(())
            param = params[index]
            for key, value in entry.items():
                if key != "step":  # the parameter's memory format (fused Adam)
                    entry[key] = torch.empty_like(param, dtype=torch.float32).copy_(value)
            state["state"][index] = entry
    optimizer.load_state_dict(state)


def _check_optimizer_entry(name: str, entry: dict[str, torch.Tensor], param: torch.Tensor) -> None:
    if not ADAM_REQUIRED <= set(entry) <= ADAM_SLOTS:
        raise CheckpointError(
            f"optimizer state of {name} holds {sorted(entry)}; Adam needs {sorted(ADAM_REQUIRED)} (optionally "
            f"{sorted(ADAM_SLOTS - ADAM_REQUIRED)})"
        )
    for slot, value in entry.items():
        shape = (1,) if slot == "step" else tuple(param.shape)
        if not torch.is_tensor(value) or value.numel() != math.prod(shape) or not value.is_floating_point():
            got = f"{tuple(value.shape)} {value.dtype}" if torch.is_tensor(value) else type(value).__name__
            raise CheckpointError(f"optimizer/{name}/{slot} is {got}; its parameter needs a float {shape}")
        if slot != "step" and tuple(value.shape) != shape:
            raise CheckpointError(f"optimizer/{name}/{slot} has shape {tuple(value.shape)}; its parameter is {shape}")
        if not torch.isfinite(value).all() or (slot == "step" and value.item() < 0):
            raise CheckpointError(f"optimizer/{name}/{slot} holds non-finite or negative values")


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


def _name(source) -> str:
    return "uploaded file" if isinstance(source, (bytes, bytearray)) else str(source)


def _read_header(source) -> dict:
    """Read and check the safetensors header alone (never the tensors): clear errors for foreign,
    truncated or padded files. The file's size must be exactly what its header declares."""
    name = _name(source)
    if isinstance(source, (bytes, bytearray)):
        size, prefix = len(source), bytes(source[:8])
        read_header = lambda n: bytes(source[8 : 8 + n])  # noqa: E731
        return _check_header(prefix, read_header, size, name)
    path = Path(source)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return _check_header(handle.read(8), handle.read, size, name)


def _check_header(prefix: bytes, read, size: int, name: str) -> dict:
    if len(prefix) < 8:
        raise CheckpointError(f"{name} is not a safetensors file (only {size} bytes)")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES or header_len + 8 > size:
        raise CheckpointError(f"{name} is not a safetensors file, or it is truncated (bad header length)")
    try:
        header = json.loads(read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{name} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__", {}), dict):
        raise CheckpointError(f"{name} is not a safetensors file (unexpected header)")
    if not all(isinstance(value, str) for value in header.get("__metadata__", {}).values()):
        raise CheckpointError(f"{name} is not a safetensors file (its metadata values must be strings)")
    data_len = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int and o >= 0 for o in offsets)
            and isinstance(shape, list)
            and all(type(d) is int and d >= 0 for d in shape)
            and isinstance(entry.get("dtype"), str)
            and entry.get("dtype") in DTYPE_BYTES
            and offsets[1] - offsets[0] == math.prod(shape) * DTYPE_BYTES[entry["dtype"]]
        ):
            raise CheckpointError(f"{name} is not a safetensors file (bad entry for tensor {key!r})")
        data_len = max(data_len, offsets[1])
    declared = 8 + header_len + data_len
    if declared > size:
        raise CheckpointError(f"{name} is truncated: {size} bytes, its header describes {declared}")
    if declared < size:
        raise CheckpointError(f"{name} is {size} bytes, but its header describes only {declared}: not a checkpoint")
    return header


def bounded_parameters(config, name: str) -> dict[str, nn.Parameter]:
    """The parameters `config` builds, by name, on the meta device (nothing is allocated); a CheckpointError
    naming `name` for a model of more than MAX_PARAMETERS, which no checkpoint may hold."""
    with torch.device("meta"):
        params = dict(registry.build(config).named_parameters())
    count = sum(p.numel() for p in params.values())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{name} describes a model of {count:,} parameters; capsviz allows {MAX_PARAMETERS:,}")
    return params


def _check_shapes(header: dict, config, name: str) -> None:
    """Compare the header's tensors with what `config` builds, on the meta device: nothing is allocated."""
    params = bounded_parameters(config, name)
    found = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    weights = {k: v for k, v in found.items() if not k.startswith(OPTIMIZER_PREFIX)}
    missing, unexpected = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or unexpected:
        raise CheckpointError(f"{name} does not match its model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, shape in weights.items():
        if shape != tuple(params[key].shape):
            raise CheckpointError(f"{name}: tensor {key} has shape {shape}, the model needs {tuple(params[key].shape)}")
    for key, shape in found.items():
        if key.startswith(OPTIMIZER_PREFIX):
            param, _, slot = key.removeprefix(OPTIMIZER_PREFIX).rpartition("/")
            needed = (1,) if slot == "step" else tuple(params[param].shape) if param in params else None
            if slot not in ADAM_SLOTS or needed is None or math.prod(shape) != math.prod(needed):
                raise CheckpointError(f"{name}: optimizer tensor {key} {shape} matches no parameter of the model")


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
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{name} has an unreadable model config: {exc}") from None
    try:
        card = json.loads(meta.get("card", "{}"))
    except (TypeError, ValueError, RecursionError):
        card = None
    if not isinstance(card, dict):
        raise CheckpointError(f"{name} has an unreadable card (its metadata 'card' is not a JSON object)")
    return kind, config, card


def _load(source, device) -> tuple[nn.Module, dict, dict[str, torch.Tensor]]:
    name = _name(source)
    header = _read_header(source)
    kind, config, card = _parse_metadata(header, name)
    _check_shapes(header, config, name)  # before anything the header declares is allocated
    try:
        tensors = load_tensors(bytes(source)) if isinstance(source, (bytes, bytearray)) else load_file(source)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{name} could not be read as safetensors: {exc}") from None
    try:
        model = registry.classes(kind)[0](config)
    except Exception as exc:
        raise CheckpointError(f"{name} describes a model that cannot be built: {exc}") from None
    optimizer = {k: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    for key, value in weights.items():
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise CheckpointError(f"{name}: tensor {key} is not finite floating point")
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.to(device).eval(), card, optimizer
