"""The sidebar: which model (and its card) and the device. Routing iterations are on the page (phones hide this)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import streamlit as st

from capsviz import registry, viz
from capsviz.checkpoint import CheckpointError
from capsviz.model import PAPER, CapsNet
from capsviz.ui import state
from capsviz.ui.resources import (
    LoadedModel,
    available_devices,
    model_from_bytes,
    model_from_file,
    resolve,
    run_checkpoints,
    shipped_model,
)
from capsviz.ui.widgets import PLOT_CONFIG, kept_expander

SHIPPED = "shipped (pretrained)"
UPLOAD = "upload a checkpoint..."
RUN_PREFIX = "run: "
MAX_CHECKPOINT_MB = 64
MAX_CURVE_EPOCHS = 10_000  # a card is the user's file: plot no more than this
MAX_NOTE_CHARS = 5_000  # and show no more of its note than this


@dataclass(frozen=True)
class Settings:
    loaded: LoadedModel
    device: str


def run_option(run_name: str) -> str:
    return f"{RUN_PREFIX}{run_name}"


def sidebar() -> Settings:
    with st.sidebar:
        st.header("Model")
        device = resolve(st.selectbox("Device", available_devices(), key=state.DEVICE))
        runs = {run_option(p.parent.name): p for p in run_checkpoints()}
        options = [SHIPPED, *runs, UPLOAD]
        if st.session_state.get(state.CHECKPOINT_CHOICE) not in options:
            st.session_state[state.CHECKPOINT_CHOICE] = SHIPPED
        choice = st.selectbox("Checkpoint", options, key=state.CHECKPOINT_CHOICE)
        loaded = _load_choice(choice, runs, device)
        _card(loaded)
    return Settings(loaded, device)


def explorable(loaded: LoadedModel) -> LoadedModel:
    """The views assume a CapsNet that reads MNIST, with the paper's 16-D digit capsules and 6x6 primary grid."""
    if not isinstance(loaded.model, CapsNet):
        raise CheckpointError(f"it holds a {registry.kind_of(loaded.model)} model; this explorer shows CapsNets")
    config = loaded.model.config
    why = registry.mnist_mismatch(config)
    if why is None and (config.digit_dim, config.primary_grid) != (PAPER.digit_dim, PAPER.primary_grid):
        why = (
            f"its capsules are {config.digit_dim}-D on a {config.primary_grid}x{config.primary_grid} primary grid; "
            f"the views need {PAPER.digit_dim}-D on {PAPER.primary_grid}x{PAPER.primary_grid}"
        )
    if why is not None:
        raise CheckpointError(why)
    return loaded


def _load_choice(choice: str, runs: dict, device: str) -> LoadedModel:
    if choice in runs:
        try:
            return explorable(model_from_file(runs[choice], device, choice))
        except CheckpointError as exc:
            st.error(f"That run's checkpoint cannot be used: {exc}. Using the shipped model.")
    elif choice == UPLOAD:
        upload = st.file_uploader(
            "A capsviz .safetensors checkpoint", type=["safetensors"], key=state.CHECKPOINT_UPLOAD
        )
        if upload is not None:
            if upload.size > MAX_CHECKPOINT_MB * 1024 * 1024:
                st.error(
                    f"That file is over {MAX_CHECKPOINT_MB} MB: not a CapsNet checkpoint. Using the shipped model."
                )
            else:
                try:
                    return explorable(model_from_bytes(upload.getvalue(), device, f"uploaded: {upload.name}"))
                except CheckpointError as exc:
                    st.error(f"Rejected: {exc}. Using the shipped model.")
        else:
            st.caption("Until a checkpoint is uploaded, the shipped model is used.")
    return shipped(device)


def shipped(device: str) -> LoadedModel:
    """The shipped model; without it the page stops with the reason and the fix."""
    try:
        return explorable(shipped_model(device))
    except (CheckpointError, OSError) as exc:
        st.error(
            f"The shipped model could not be loaded: {exc}. Restore `pretrained/` from the repository "
            "(git checkout pretrained/), or train one with `python -m capsviz train`."
        )
        st.stop()


def _card(loaded: LoadedModel) -> None:
    card = loaded.card
    accuracy = card.get("test_accuracy")
    measured = isinstance(accuracy, (int, float))
    lines = [
        f"**{loaded.label}**",
        _accuracy_line(accuracy, card.get("test_images")) if measured else "test accuracy: not measured",
        f"{card.get('epochs', '?')} epochs on {card.get('train_images', '?')} images",
        f"trained on: {card.get('device', '?')}",
    ]
    if isinstance(card.get("wall_seconds"), (int, float)):
        lines.append(f"training time: {card['wall_seconds'] / 60:.0f} min")
    st.markdown("  \n".join(lines))
    per_epoch = epoch_accuracies(card)
    if per_epoch is not None:
        curve = kept_expander("Test error after each epoch", key=state.CARD_CURVE_OPEN)
        if curve.open:  # built only when shown
            start = run_start(card, len(per_epoch))
            with curve:
                figure = viz.epoch_errors_figure(per_epoch, run_start=start)
                st.plotly_chart(figure, config=PLOT_CONFIG, key="fig_card_curve")
                st.caption(
                    "Logged on the test images after each epoch and never used to choose one: the model loaded "
                    f"is the last epoch (red), at {100 * (1 - per_epoch[-1]):.2f}%. The axis starts at 0."
                    + _runs_line(card, start, len(per_epoch))
                )
                note = card.get("note")
                if start is not None and isinstance(note, str):
                    st.caption(f"The card's note: {note[:MAX_NOTE_CHARS]}{'...' if len(note) > MAX_NOTE_CHARS else ''}")


def epoch_accuracies(card: dict) -> list[float] | None:
    """The card's logged test accuracy per epoch, or None where there is no curve to draw (fewer than 2, or not
    accuracies)."""
    values = card.get("test_accuracy_per_epoch")
    if not isinstance(values, list) or not 2 <= len(values) <= MAX_CURVE_EPOCHS:
        return None
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not numbers or not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        return None
    return [float(v) for v in values]


def run_start(card: dict, epochs: int) -> int | None:
    """The first epoch of the run that produced the weights, where the card says it continued earlier runs."""
    this_run = card.get("epochs_this_run")
    if type(this_run) is not int or not 1 <= this_run < epochs:
        return None
    return epochs - this_run + 1


def schedule_text(card: dict) -> str | None:
    """The card's learning-rate schedule in words, or None where its fields are not a schedule of numbers."""
    lr, low, decay = (card.get(k) for k in ("lr", "lr_min", "lr_decay_per_epoch"))
    if card.get("lr_schedule") == "cosine" and _positive(lr) and _positive(low):
        return f"learning rate cosine {lr:.0e} to {low:.0e}"
    if card.get("lr_schedule") == "exp" and _positive(lr) and _positive(decay):
        return f"learning rate {lr:.0e} x{decay:g} per epoch"
    return None


def _positive(value) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and value > 0


def _runs_line(card: dict, start: int | None, epochs: int) -> str:
    """Which epochs the last run trained and which it continued (their schedules are only in the card's note)."""
    if start is None:
        return ""
    schedule = schedule_text(card)
    how = f" ({schedule})" if schedule else ""
    return (
        f" Epochs {start}-{epochs} are the run that wrote these weights{how}; epochs 1-{start - 1} (left of the "
        "dotted line) are the earlier training it continued, whose schedules the card's note below gives."
    )


def _accuracy_line(accuracy: float, test_images) -> str:
    """A lesson's quick run is evaluated on part of the test set: say on how many images."""
    subset = isinstance(test_images, int) and 0 < test_images < 10_000
    where = f" (on the first {test_images:,} test images)" if subset else ""
    return f"MNIST test accuracy: **{accuracy:.2%}**{where}"
