"""The sidebar: which model (and its card) and the device. Routing iterations are on the page (phones hide this)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import streamlit as st

from capsviz import registry
from capsviz.checkpoint import CheckpointError
from capsviz.ui import card, state
from capsviz.ui.resources import (
    LoadedModel,
    available_devices,
    model_from_bytes,
    model_from_file,
    open_runs,
    resolve,
    run_checkpoints,
    session_watch,
    shipped_model,
)
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain

SHIPPED = "shipped (pretrained)"
UPLOAD = "upload a checkpoint..."
RUN_PREFIX = "run: "
MAX_CHECKPOINT_MB = 64


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
        run = runs[loaded.label].parent if loaded.label in runs else None
        viewer = st.session_state.setdefault(state.VIEWER, uuid.uuid4().hex)  # this browser session, by a token
        before = open_runs().show(viewer, run, session_watch())  # kept from other sessions' prunes while shown
        if before is not None and before not in {path.parent for path in runs.values()}:
            st.warning(
                f"{plain(before.name)} is no longer in the runs folder (the app keeps its newest runs only, "
                "and deletes older ones when a training starts): showing the shipped model."
            )
        card.show(loaded)
    return Settings(loaded, device)


def require_explorable(loaded: LoadedModel) -> LoadedModel:
    """The views assume a CapsNet that reads MNIST, with the paper's 16-D digit capsules and 6x6 primary grid."""
    why = registry.explorer_mismatch(loaded.model)
    if why is not None:
        raise CheckpointError(why)
    return loaded


def _load_choice(choice: str, runs: dict, device: str) -> LoadedModel:
    if choice in runs:
        try:
            return require_explorable(model_from_file(runs[choice], device, choice))
        except CheckpointError as exc:
            st.error(f"That run's checkpoint cannot be used: {_reason(exc)}. Using the shipped model.")
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
                    return require_explorable(model_from_bytes(upload.getvalue(), device, f"uploaded: {upload.name}"))
                except CheckpointError as exc:
                    st.error(f"Rejected: {_reason(exc)}. Using the shipped model.")
        else:
            st.caption("Until a checkpoint is uploaded, the shipped model is used.")
    return shipped(device)


def _reason(exc: Exception) -> str:
    """An error's message quotes the file's own fields and path: shown as typed."""
    return plain(exc, MAX_MESSAGE_CHARS)


def shipped(device: str) -> LoadedModel:
    """The shipped model; without it the page stops with the reason and the fix."""
    try:
        return require_explorable(shipped_model(device))
    except (CheckpointError, OSError) as exc:
        st.error(
            f"The shipped model could not be loaded: {_reason(exc)}. Restore `pretrained/` from the repository "
            "(git checkout pretrained/), or train one with `python -m capsviz train`."
        )
        st.stop()
