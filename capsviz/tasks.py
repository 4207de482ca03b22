"""What a model is trained to read: one MNIST digit per image, or two overlapping ones (MultiMNIST).

A model config's `task` names one of TASKS, so a checkpoint says what it was trained on. This
module is the one home for what a task means: its input, how many digits an image holds, the
targets a loss sees and how a prediction is read from class scores.

    config = tasks.for_task(CapsNetConfig(), "multimnist")  # 36x36 input, two digits
    tasks.predict(scores, 2)                                # (B, 2): the two highest scores
    tasks.count_correct(scores, labels)                     # labels (B, 2): both digits right
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from capsviz import multimnist
from capsviz.data import MNIST_TEST_IMAGES, Split


@dataclass(frozen=True)
class Task:
    title: str  # as a sentence names it
    input_size: int  # side of the square grey input
    digits: int  # digits per image
    augmentation: str  # how training images are drawn, for a card
    test_set: str  # what a report calls its test examples
    test_size: int  # how many a shipped model is measured on


TASKS = {
    "mnist": Task("MNIST", 28, 1, "random shift of up to 2 px, zero padded", "MNIST test images", MNIST_TEST_IMAGES),
    "multimnist": Task(
        "MultiMNIST",
        multimnist.CANVAS,
        multimnist.DIGITS,
        multimnist.DESCRIPTION,
        "MultiMNIST test pairs (both digits right)",
        multimnist.TEST_PAIRS,
    ),
}
DEFAULT = "mnist"  # a config written before tasks were recorded


def check(name: str) -> None:
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(sorted(TASKS))}, got {name!r}")


def for_task(config, name: str):
    """`config` (any model kind's) with the task and the input size it reads."""
    check(name)
    return dataclasses.replace(config, task=name, input_size=TASKS[name].input_size)


def evaluation_set(name: str, digits: Split) -> Split:
    """The test set of task `name` from the MNIST test digits: the digits themselves, or the fixed pairs."""
    return multimnist.fixed_test_pairs(digits) if name == "multimnist" else digits


def digits_of(config) -> int:
    """How many digits an image of `config`'s task holds."""
    return TASKS[config.task].digits


def mismatch(config) -> str | None:
    """Why a model of `config` cannot read its own task's images (10 classes of grey S x S), or None."""
    task = TASKS[config.task]
    shape = (config.num_classes, config.input_size, config.in_channels)
    if shape == (10, task.input_size, 1):
        return None
    return (
        f"it classifies {shape[0]} classes of {shape[1]}x{shape[1]}x{shape[2]} input; "
        f"{task.title} needs 10 of {task.input_size}x{task.input_size}x1"
    )


def multi_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """labels (B,) or (B, K) -> (B, J): 1 for every class present, 0 elsewhere."""
    if labels.dim() == 1:
        labels = labels[:, None]  # (B, 1)
    hot = torch.zeros(labels.shape[0], num_classes, dtype=dtype, device=labels.device)
    return hot.scatter_(1, labels, 1.0)  # (B, J)


def predict(scores: torch.Tensor, digits: int) -> torch.Tensor:
    """scores (B, J) -> (B,) the highest class for one digit, else (B, digits) the highest first."""
    if digits == 1:
        return scores.argmax(dim=1)
    return scores.topk(digits, dim=1).indices  # (B, digits)


def count_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """How many examples are right, as a 0-d tensor: labels (B,) the argmax, (B, K) the K highest scores
    naming exactly the K labels (both digits right), in any order."""
    if labels.dim() == 1:
        return (scores.argmax(dim=1) == labels).sum()
    predicted = predict(scores, labels.shape[1]).sort(dim=1).values  # (B, K)
    return (predicted == labels.sort(dim=1).values).all(dim=1).sum()
