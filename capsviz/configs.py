"""Model configs to and from the JSON a checkpoint stores: one rule for every model kind."""

from __future__ import annotations

from dataclasses import fields


def config_from_dict(cls, data: dict):
    """A config dataclass from its JSON form: unknown fields refused, JSON lists back to tuples."""
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items()})
