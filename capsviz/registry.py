"""Model kinds: the one table from a checkpoint's "kind" to its model class and config class.

    from capsviz import registry
    model = registry.build(CapsNetConfig())          # the model a config describes
    registry.kind_of(model)                          # "capsnet": what a checkpoint records
    registry.has_routing(model)                      # True: it takes routing_iters

A model kind is a config dataclass (`to_dict()`, `from_dict(dict)`, `num_classes`, `input_size`,
`task`: a name in `capsviz.tasks.TASKS`) and an nn.Module built from it that has `config`,
`objective(x, targets, singles=None) -> (loss, scores)` (the trainer calls it; two-digit
targets are (B, 2), with each digit's own image in `singles`) and `scores(x) -> (B, classes)`
(evaluate and predict call it; the argmax is the prediction, the two highest for two digits).
Adding one is one file and one line in MODELS (docs/architecture.md, "Adding a model").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields

from torch import nn

from capsviz import tasks
from capsviz.cnn import CNN, CNNConfig
from capsviz.model import PAPER, CapsNet, CapsNetConfig

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "capsnet": (CapsNet, CapsNetConfig),
    "cnn": (CNN, CNNConfig),
}
LEGACY_KIND = "capsnet"  # checkpoints written before kinds were recorded hold a CapsNet


class UnknownKindError(ValueError):
    """A kind that is not in MODELS; the message lists the known ones."""


def classes(kind: str) -> tuple[type[nn.Module], type]:
    """(model class, config class) of `kind`."""
    if kind not in MODELS:
        raise UnknownKindError(f"unknown model kind {kind!r}; this capsviz knows {', '.join(sorted(MODELS))}")
    return MODELS[kind]


def kind_of(model_or_config) -> str:
    """The kind of a model or of a config, by its class."""
    for kind, (model_class, config_class) in MODELS.items():
        if type(model_or_config) in (model_class, config_class):
            return kind
    raise UnknownKindError(f"{type(model_or_config).__name__} is not a registered model or config (capsviz.registry)")


def has_routing(model_or_config) -> bool:
    """Whether a model, its config or its config class routes capsules: its config has `routing_iters`."""
    config = model_or_config.config if isinstance(model_or_config, nn.Module) else model_or_config
    return any(f.name == "routing_iters" for f in fields(config))


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode for the block; its training mode comes back afterwards, even on an error."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def load_config(kind: str, data: dict):
    """The config of `kind` from a checkpoint's JSON (ValueError for fields it does not have)."""
    return classes(kind)[1].from_dict(data)


def mnist_mismatch(config) -> str | None:
    """Why a model of `config` cannot read MNIST digits (28x28 grey, 10 classes), or None when it can."""
    if config.task != "mnist":
        return f"it was trained on {config.task}, not on single MNIST digits"
    return tasks.mismatch(config)


def explorer_mismatch(model: nn.Module) -> str | None:
    """Why the explorer's views cannot show `model` (they assume an MNIST CapsNet with the paper's 16-D digit
    capsules on a 6x6 primary grid), or None when they can."""
    if not has_routing(model):
        return f"it holds a {kind_of(model)} model; this explorer shows CapsNets"
    config = model.config
    why = mnist_mismatch(config)
    if why is None and (config.digit_dim, config.primary_grid) != (PAPER.digit_dim, PAPER.primary_grid):
        why = (
            f"its capsules are {config.digit_dim}-D on a {config.primary_grid}x{config.primary_grid} primary grid; "
            f"the views need {PAPER.digit_dim}-D on {PAPER.primary_grid}x{PAPER.primary_grid}"
        )
    return why


def build(config) -> nn.Module:
    """A freshly initialised model of the kind `config` belongs to."""
    return classes(kind_of(config))[0](config)
