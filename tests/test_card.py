"""The sidebar's model card: a card is the user's file, so every field is checked before it is shown
(capsviz.ui.card)."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from capsviz.ui.card import (  # noqa: E402
    MAX_CURVE_EPOCHS,
    count,
    epoch_accuracies,
    number,
    plain,
    run_start,
    schedule_text,
)

HUGE = 10**400  # JSON reads integers of any size; float() of this raises OverflowError


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
        ({"lr_schedule": "cosine", "lr": 5e-4, "lr_min": 1e-5}, "learning rate cosine 0.0005 to 1e-05"),
        ({"lr_schedule": "exp", "lr": 1e-3, "lr_decay_per_epoch": 0.9}, "learning rate 0.001 x0.9 per epoch"),
        ({"lr_schedule": "cosine", "lr": 5e-4}, None),
        ({"lr_schedule": "cosine", "lr": "5e-4", "lr_min": 1e-5}, None),
        ({"lr_schedule": "exp", "lr": float("inf"), "lr_decay_per_epoch": 0.9}, None),
        ({"lr_schedule": "step", "lr": 1e-3, "lr_decay_per_epoch": 0.9}, None),
    ],
)
def test_a_cards_schedule_is_told_only_from_numbers(card, text):
    assert schedule_text(card) == text


def test_a_training_runs_card_draws_its_history():
    history = [{"epoch": 1, "test_accuracy": 0.97}, {"epoch": 2, "test_accuracy": 0.98}]
    assert epoch_accuracies({"history": history}) == [0.97, 0.98]
    assert epoch_accuracies({"history": [*history, {"epoch": 3}]}) is None  # one epoch without an accuracy
    assert epoch_accuracies({"history": [*history, "0.99"]}) is None
    assert epoch_accuracies({"history": [history[0]] * (MAX_CURVE_EPOCHS + 1)}) is None
    assert epoch_accuracies({"test_accuracy_per_epoch": [0.5, 0.6], "history": history}) == [0.5, 0.6]  # export's


@pytest.mark.parametrize(
    ("value", "low", "high", "expected"),
    [
        (0.5, 0, 1, 0.5),
        (1, 0, 1, 1.0),
        (True, 0, 1, None),
        (float("nan"), 0, 1, None),
        (float("inf"), 0, float("inf"), None),
        (1.5, 0, 1, None),
        (-600, 0, float("inf"), None),
        (HUGE, 0, float("inf"), None),
        ("0.5", 0, 1, None),
        ([0.5], 0, 1, None),
    ],
)
def test_a_card_number_is_a_finite_float_in_its_range(value, low, high, expected):
    assert number(value, low, high) == expected


def test_a_card_count_is_a_whole_number_of_sensible_size():
    assert count(60_000) == 60_000 and count(0) == 0
    assert count(True) is None and count(-1) is None and count(2.0) is None and count(HUGE) is None


def test_a_card_string_is_cut_short_and_shown_as_typed():
    assert plain("A" * 15_000_000) == "A" * 100
    assert (
        plain("![x](https://example.invalid/t.png) **b**") == r"\!\[x\]\(https\://example\.invalid/t\.png\) \*\*b\*\*"
    )
    assert plain("two\nlines") == "two lines"
