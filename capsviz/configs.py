"""Model configs: the bounds every config is checked against, and the JSON a checkpoint stores.

The bounds are inclusive and hold for every model kind, so that a checkpoint cannot make
capsviz allocate what it declares without limit.
"""

from __future__ import annotations

from dataclasses import fields

MAX_ROUTING_ITERS = 5
MAX_PARAMETERS = 50_000_000  # about 6x the paper's CapsNet; counted before a checkpoint's model is built
MAX_DECODER_HIDDEN = 4096
INPUT_BOUNDS = {"num_classes": (2, 100), "input_size": (8, 64), "in_channels": (1, 4), "kernel_size": (1, 15)}
CAPSNET_BOUNDS = {
    **INPUT_BOUNDS,
    "conv_channels": (1, 1024),
    "primary_types": (1, 128),
    "primary_dim": (1, 32),
    "primary_stride": (1, 4),
    "digit_dim": (1, 64),
    "routing_iters": (1, MAX_ROUTING_ITERS),
}


def check_bounds(config, bounds: dict[str, tuple[int, int]]) -> None:
    """ValueError unless each field named in `bounds` is an int (not a bool) within its (low, high)."""
    for name, (low, high) in bounds.items():
        value = getattr(config, name)
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")


def config_from_dict(cls, data: dict):
    """A config dataclass from its JSON form: unknown fields refused, JSON lists back to tuples."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
