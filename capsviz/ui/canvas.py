"""The drawing canvas, with Undo and Clear as ordinary buttons, and a drawing that survives a detour.

The canvas component's own toolbar shows above the canvas on hover only (invisible on a touch
screen), so the app offers its own always-visible buttons and drives the component through its
`initial_drawing`: a changed initial drawing makes the component load it and report it back.
The last drawing is remembered in this session, so Draw -> MNIST -> Draw brings it back.
This is the only module that knows about streamlit-drawable-canvas.
"""

from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from capsviz.ui import state

CANVAS_SIZE = 280
DEFAULT_STROKE = 20


def _memory() -> dict:
    """{"objects": the last strokes, "data": their PNG, "load": what the component loads, "n"}."""
    return st.session_state.setdefault(state.CANVAS_MEMORY, {"objects": [], "data": None, "load": None, "n": 0})


def _load(objects: list) -> None:
    """Make the component (re)load `objects`: the nonce changes the initial drawing even when objects do not."""
    memory = _memory()
    memory["n"] += 1
    memory["load"] = {"objects": objects, "capsviz": memory["n"]}


def clear() -> None:
    memory = _memory()
    memory["ignore"] = memory["data"]  # the component still holds the old drawing until it reports the new one
    memory["objects"], memory["data"] = [], None
    _load([])


def undo() -> None:
    memory = _memory()
    if memory["objects"]:
        _load(memory["objects"][:-1])


def left() -> None:
    """Called on a run without the canvas: the next time it mounts, it loads the last drawing."""
    memory = _memory()
    if memory["objects"] and (memory["load"] or {}).get("objects") is not memory["objects"]:
        _load(memory["objects"])


def decode(png: bytes | None) -> np.ndarray | None:
    return None if not png else np.asarray(Image.open(io.BytesIO(png)))


def draw_canvas() -> np.ndarray | None:
    """The canvas (white on black, like MNIST) and its buttons -> RGBA array, or None before any drawing."""
    from streamlit_drawable_canvas import st_canvas

    memory = _memory()
    result = st_canvas(
        stroke_width=st.session_state.get(state.STROKE_WIDTH, DEFAULT_STROKE),
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=CANVAS_SIZE,
        width=CANVAS_SIZE,
        drawing_mode="freedraw",
        initial_drawing=memory["load"],
        return_image_data=True,
        key=state.CANVAS,
    )
    buttons = st.container(horizontal=True, key="canvas_buttons")
    buttons.button("Undo", key=state.CANVAS_UNDO, on_click=undo, disabled=not memory["objects"], icon=":material/undo:")
    buttons.button("Clear", key=state.CANVAS_CLEAR, on_click=clear, icon=":material/delete:")
    with buttons.popover("Pen", icon=":material/edit:", key="pen_popover"):
        st.slider("Stroke width", 6, 40, DEFAULT_STROKE, key=state.STROKE_WIDTH)
    data = result.image_bytes
    if data is not None and data == memory.get("ignore"):
        return None  # cleared: the component has not reported its empty canvas yet
    if data is not None:
        memory.pop("ignore", None)
        memory["data"] = data
        memory["objects"] = (result.json_data or {}).get("objects") or []
        return decode(data)
    return decode(memory["data"])  # remounted after a detour: the component reloads the strokes it shows
