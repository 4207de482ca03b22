"""The loaded model's card in the sidebar: its numbers, and its test error after each epoch.

A card is the user's file (an upload carries one in its header): every field is checked before
it is shown, strings are cut short and shown as plain text, and a field that is not what it
should be shows as "?" instead of a wrong number.
"""

from __future__ import annotations

import math

import streamlit as st

from capsviz.data import MNIST_TEST_IMAGES
from capsviz.figures import viz
from capsviz.ui import state
from capsviz.ui.resources import LoadedModel
from capsviz.ui.text import plain
from capsviz.ui.widgets import PLOT_CONFIG, kept_expander

MAX_CURVE_EPOCHS = 10_000  # plot no more epochs than this
MAX_NOTE_CHARS = 5_000  # show no more of the note than this


def show(loaded: LoadedModel) -> None:
    card = loaded.card
    accuracy = number(card.get("test_accuracy"), 0.0, 1.0)
    epochs, images = count(card.get("epochs")), count(card.get("train_images"))
    lines = [
        f"**{plain(loaded.label)}**",
        _accuracy_line(accuracy, card.get("test_images")) if accuracy is not None else "test accuracy: not measured",
        f"{epochs if epochs is not None else '?'} epochs on {images if images is not None else '?'} images",
        f"trained on: {plain(card.get('device')) if isinstance(card.get('device'), str) else '?'}",
    ]
    seconds = number(card.get("wall_seconds"), 0.0, math.inf)
    if seconds is not None:
        lines.append(f"training time: {seconds / 60:.0f} min")
    st.markdown("  \n".join(lines))
    per_epoch = epoch_accuracies(card)
    if per_epoch is not None:
        curve = kept_expander("Test error after each epoch", key=state.CARD_CURVE_OPEN)
        if curve.open:  # built only when shown
            with curve:
                _curve(card, per_epoch)


def _curve(card: dict, per_epoch: list[float]) -> None:
    start = run_start(card, len(per_epoch))
    note = card.get("note") if isinstance(card.get("note"), str) and card["note"].strip() else None
    st.plotly_chart(viz.epoch_errors_figure(per_epoch, run_start=start), config=PLOT_CONFIG, key="fig_card_curve")
    st.caption(
        "Logged on the test images after each epoch and never used to choose one: the model loaded is the last "
        f"epoch (red), at {100 * (1 - per_epoch[-1]):.2f}% test error. The axis starts at 0."
        + _runs_line(card, start, len(per_epoch), note is not None)
    )
    if start is not None and note is not None:
        cut = "..." if len(note) > MAX_NOTE_CHARS else ""
        st.caption(f"The card's note: {plain(note, MAX_NOTE_CHARS)}{cut}")


def number(value, low: float, high: float) -> float | None:
    """A card's number as a float in [low, high], or None: not bool, not NaN, not an integer too big for a float."""
    if type(value) not in (int, float):
        return None
    try:
        value = float(value)
    except OverflowError:  # JSON holds integers of any size
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def count(value) -> int | None:
    """A card's count (epochs, images): a whole number from 0 to 10^12, else None."""
    return value if type(value) is int and 0 <= value <= 10**12 else None


def epoch_accuracies(card: dict) -> list[float] | None:
    """The logged test accuracy per epoch: an export's list, else a training run's history; None where there is
    no curve to draw (fewer than 2, more than MAX_CURVE_EPOCHS, or not accuracies in 0-1)."""
    values = card.get("test_accuracy_per_epoch")
    history = card.get("history")
    if values is None and isinstance(history, list) and len(history) <= MAX_CURVE_EPOCHS:
        values = [row.get("test_accuracy") if isinstance(row, dict) else None for row in history]
    if not isinstance(values, list) or not 2 <= len(values) <= MAX_CURVE_EPOCHS:
        return None
    accuracies = [number(v, 0.0, 1.0) for v in values]
    return None if None in accuracies else accuracies


def run_start(card: dict, epochs: int) -> int | None:
    """The first epoch of the run that produced the weights, where the card says it continued earlier runs."""
    this_run = card.get("epochs_this_run")
    if type(this_run) is not int or not 1 <= this_run < epochs:
        return None
    return epochs - this_run + 1


def schedule_text(card: dict) -> str | None:
    """The card's learning-rate schedule in words, or None where its fields are not a schedule of numbers."""
    lr, low = number(card.get("lr"), 1e-12, 1e3), number(card.get("lr_min"), 1e-12, 1e3)
    decay = number(card.get("lr_decay_per_epoch"), 1e-12, 1e3)
    if card.get("lr_schedule") == "cosine" and lr is not None and low is not None:
        return f"learning rate cosine {lr:.3g} to {low:.3g}"
    if card.get("lr_schedule") == "exp" and lr is not None and decay is not None:
        return f"learning rate {lr:.3g} x{decay:.3g} per epoch"
    return None


def _epochs(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def _runs_line(card: dict, start: int | None, epochs: int, has_note: bool) -> str:
    """Which epochs the last run trained and which it continued (their schedules are only in the card's note)."""
    if start is None:
        return ""
    schedule = schedule_text(card)
    how = f" ({schedule})" if schedule else ""
    where = ", whose schedules the card's note below gives" if has_note else ""
    return (
        f" The run that wrote these weights: {_epochs(start, epochs)}{how}. The earlier training it continued: "
        f"{_epochs(1, start - 1)}, left of the dotted line{where}."
    )


def _accuracy_line(accuracy: float, test_images) -> str:
    """A lesson's quick run is evaluated on part of the test set: say on how many images."""
    subset = count(test_images) is not None and 0 < test_images < MNIST_TEST_IMAGES
    where = f" (on the first {test_images:,} test images)" if subset else ""
    return f"MNIST test accuracy: **{accuracy:.2%}**{where}"
