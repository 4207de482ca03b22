"""The model's mistakes on the MNIST test set, as thumbnails: one click makes one the input.

The list is computed once per (model, routing iterations) for the whole server (a shared cache),
CHUNK test images at a time so that nobody waits minutes on a CPU: the first session that asks
waits for one chunk with a progress bar, and anyone can check the next chunk.
"""

from __future__ import annotations

import threading

import numpy as np
import streamlit as st

from capsviz.analysis.mistakes import Mistake, misclassified
from capsviz.data import Split
from capsviz.ui import state
from capsviz.ui.resources import LoadedModel

SHOWN = 28  # thumbnails at a time: 7 rows of 4
CHUNK = 2_000  # test images classified per request
PER_ROW = 4  # at 1440x900 a fifth column cuts the "true→predicted" labels
THUMB = 56  # px


@st.cache_resource
def _store() -> tuple[dict, threading.Lock]:
    """Process-wide {(model key, routing iterations): (test images checked, [Mistake, ...])} and its lock."""
    return {}, threading.Lock()


def mistakes(loaded: LoadedModel, split: Split, routing_iters: int, *, more: bool = False) -> tuple[int, list[Mistake]]:
    """The mistakes among the first test images checked so far; `more` checks CHUNK more first."""
    store, lock = _store()
    key = (loaded.key, routing_iters)
    with lock:
        checked, found = store.get(key, (0, []))
        if (more or not checked) and checked < len(split):
            end = min(checked + CHUNK, len(split))
            bar = st.progress(0.0, text=f"Classifying test images {checked:,} to {end:,}...")

            def report(done: int, total: int) -> None:
                bar.progress(done / total, text=f"Classifying test images: {checked + done:,} of {end:,}")

            part = Split(split.images[checked:end], split.labels[checked:end])
            new = misclassified(loaded.model, part, routing_iters=routing_iters, on_batch=report)
            found = found + [Mistake(checked + m.index, m.label, m.predicted) for m in new]
            checked = end
            store[key] = (checked, found)
            bar.empty()
    return checked, found


def _pick(index: int, wanted) -> None:
    st.session_state[state.SAMPLE_INDEX] = index
    st.session_state[state.SAMPLE_PICKED_FOR] = wanted


def gallery(loaded: LoadedModel, split: Split, routing_iters: int, wanted) -> None:
    """Thumbnails of the model's test errors with true and predicted labels; a click picks one."""
    if not st.session_state.get(state.GALLERY_SHOWN):
        st.button("Show all of this model's mistakes", key=state.GALLERY_OPEN, on_click=_show)
        return
    more = st.session_state.pop(state.GALLERY_MORE_CHECK, False)
    checked, found = mistakes(loaded, split, routing_iters, more=more)
    st.caption(
        f"{len(found)} of the first {checked:,} test images are wrong ({1 - len(found) / checked:.2%} right) with "
        f"{routing_iters} routing iterations. Labels: true → predicted. Click one to explore it."
    )
    if checked < len(split):
        st.button(
            f"Check {min(CHUNK, len(split) - checked):,} more test images", key=state.GALLERY_CHECK, on_click=_check
        )
    start = st.session_state.get(state.GALLERY_PAGE, 0) % max(len(found), 1)
    for row_start in range(start, min(start + SHOWN, len(found)), PER_ROW):
        columns = st.columns(PER_ROW, gap="small")
        for column, mistake in zip(columns, found[row_start : row_start + PER_ROW]):
            pixels = split.images[mistake.index].numpy().astype(np.uint8)  # (28, 28)
            column.image(pixels, width=THUMB)
            column.button(
                f"{mistake.label}→{mistake.predicted}",
                key=f"{state.GALLERY_PICK}{mistake.index}",
                on_click=_pick,
                args=(mistake.index, wanted),
                help=f"test image #{mistake.index}: labelled {mistake.label}, predicted {mistake.predicted}",
                width="stretch",
            )
    if len(found) > SHOWN:
        st.button("More", key=state.GALLERY_MORE, on_click=_more, args=(len(found),))


def _check() -> None:
    st.session_state[state.GALLERY_MORE_CHECK] = True


def _show() -> None:
    st.session_state[state.GALLERY_SHOWN] = True


def _more(total: int) -> None:
    st.session_state[state.GALLERY_PAGE] = (st.session_state.get(state.GALLERY_PAGE, 0) + SHOWN) % total
