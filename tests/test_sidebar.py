"""The explorer refuses, with a reason, a checkpoint its views cannot show (capsviz.ui.sidebar.explorable)."""

from __future__ import annotations

from dataclasses import replace

import pytest

pytest.importorskip("streamlit")

from capsviz.checkpoint import CheckpointError  # noqa: E402
from capsviz.cnn import CNN  # noqa: E402
from capsviz.model import CapsNet  # noqa: E402
from capsviz.ui.resources import LoadedModel  # noqa: E402
from capsviz.ui.sidebar import (  # noqa: E402
    MAX_CURVE_EPOCHS,
    epoch_accuracies,
    explorable,
    run_start,
    schedule_text,
)

from conftest import TINY_CAPSNET  # noqa: E402


def loaded(model) -> LoadedModel:
    return LoadedModel(model=model, card={}, label="test", key="test")


def test_a_small_mnist_capsnet_is_explorable():
    model = CapsNet(TINY_CAPSNET)
    assert explorable(loaded(model)).model is model


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (CNN(), "it holds a cnn model"),
        (CapsNet(replace(TINY_CAPSNET, num_classes=5)), "it classifies 5 classes of 28x28x1 input"),
        (CapsNet(replace(TINY_CAPSNET, digit_dim=8)), "its capsules are 8-D on a 6x6 primary grid"),
    ],
)
def test_what_the_views_cannot_show_is_refused_with_the_reason(model, reason):
    with pytest.raises(CheckpointError, match=reason):
        explorable(loaded(model))


def test_a_cards_curve_is_its_logged_accuracies():
    assert epoch_accuracies({"test_accuracy_per_epoch": [0.98, 1]}) == [0.98, 1.0]


@pytest.mark.parametrize(
    "values",
    [
        None,
        "0.9,0.95",
        [0.99],
        [0.9, "0.95"],
        [0.9, True],
        [0.9, float("nan")],
        [0.9, 1.5],
        [0.9, -0.1],
        [0.5] * (MAX_CURVE_EPOCHS + 1),
    ],
)
def test_a_card_without_a_drawable_curve_gets_none(values):
    """A card is the user's file: one point, strings, NaN, values outside 0-1 or an endless list draw nothing."""
    assert epoch_accuracies({"test_accuracy_per_epoch": values}) is None


@pytest.mark.parametrize(
    ("this_run", "start"),
    [(30, 20), (1, 49), (49, None), (50, None), (0, None), (-3, None), (30.0, None), (True, None), ("30", None)],
)
def test_the_last_run_starts_where_the_card_says_it_continued_earlier_ones(this_run, start):
    """Only a whole number of epochs from 1 to all but one marks a boundary; all epochs is one run, no line."""
    assert run_start({"epochs_this_run": this_run}, 49) == start
    assert run_start({}, 49) is None


@pytest.mark.parametrize(
    ("card", "text"),
    [
        ({"lr_schedule": "cosine", "lr": 5e-4, "lr_min": 1e-5}, "learning rate cosine 5e-04 to 1e-05"),
        ({"lr_schedule": "exp", "lr": 1e-3, "lr_decay_per_epoch": 0.9}, "learning rate 1e-03 x0.9 per epoch"),
        ({"lr_schedule": "cosine", "lr": 5e-4}, None),
        ({"lr_schedule": "cosine", "lr": "5e-4", "lr_min": 1e-5}, None),
        ({"lr_schedule": "exp", "lr": float("inf"), "lr_decay_per_epoch": 0.9}, None),
        ({"lr_schedule": "step", "lr": 1e-3, "lr_decay_per_epoch": 0.9}, None),
    ],
)
def test_a_cards_schedule_is_told_only_from_numbers(card, text):
    assert schedule_text(card) == text
