"""The first screen of a lesson: what a capsule is, what to try, and examples that load in one click.

An example is a drawing (capsviz.examples): its button puts the strokes on the canvas, so it
loads offline and stays editable (add a stroke to the 4/9 and watch which capsule wins). The
panel stands where the prediction will be, and folds into a popover beside it once there is an
input: nothing above the canvas moves while a hand draws on it.
"""

from __future__ import annotations

import io

import streamlit as st

from capsviz.examples import EXAMPLES, canvas_objects, render
from capsviz.ui import canvas, state
from capsviz.ui.inputs import DRAW
from capsviz.ui.two_digit_input import PAIR
from capsviz.ui.widgets import presenting

INTRO = (
    "A **capsule** is a group of neurons whose output is a vector: its **length** says how sure the network is "
    "that a digit is there, its **direction** (the pose) says how that digit is drawn. "
    "Start from an example or draw your own, then watch the ten capsule lengths, the routing between capsules "
    "and the 16 pose dimensions."
)


def _png(name: str) -> bytes:
    buffer = io.BytesIO()
    render(EXAMPLES[name]).save(buffer, format="PNG")
    return buffer.getvalue()


def load(name: str) -> None:
    """A button's callback: the example's strokes on the canvas, and the canvas as the input."""
    state.put(state.INPUT_SOURCE, DRAW)
    st.session_state.pop(state.SHARE_IMAGE, None)  # a link's image gives way, as "Draw your own" does
    canvas.show(canvas_objects(EXAMPLES[name]), _png(name))
    st.session_state[state.LESSON_SHOWN] = name
    _fold_popover()


def shown_example() -> str | None:
    """The example the canvas shows, while its strokes are still exactly the example's."""
    name = st.session_state.get(state.LESSON_SHOWN)
    if name not in EXAMPLES or state.value(state.INPUT_SOURCE, DRAW) != DRAW:
        return None
    drawn = (st.session_state.get(state.CANVAS_MEMORY) or {}).get("objects") or []
    wanted = canvas_objects(EXAMPLES[name])
    same = len(drawn) == len(wanted) and all(
        isinstance(o, dict) and o.get("path") == w["path"] for o, w in zip(drawn, wanted, strict=True)
    )
    return name if same else None


def first_screen() -> bool:
    """Nothing to read yet: the drawing input, an empty canvas, no image from a link."""
    drawn = (st.session_state.get(state.CANVAS_MEMORY) or {}).get("objects")
    source = state.value(state.INPUT_SOURCE, DRAW)
    return source == DRAW and not drawn and st.session_state.get(state.SHARE_IMAGE) is None


def _buttons() -> None:
    row = st.container(horizontal=True, key="lesson_examples")
    for name, example in EXAMPLES.items():
        row.button(example.title, key=state.LESSON_EXAMPLE.format(name), on_click=load, args=(name,), help=example.note)
    if presenting():
        return  # presentation mode has no Two digits screen to open
    row.button(
        "Two overlapping digits", key=state.LESSON_TWO, on_click=open_two_digits,
        help="Where the paper says routing matters: a MultiMNIST test pair in the Two digits tab.",
    )  # fmt: skip


TWO_DIGIT_EXAMPLE = 3  # a MultiMNIST test pair: a 9 over a 7


def open_two_digits() -> None:
    """A button's callback: the Two digits tab, on one test pair."""
    state.put(state.TWO_SOURCE, PAIR)
    state.put(state.TWO_PAIR, TWO_DIGIT_EXAMPLE)
    st.session_state[state.TABS] = state.TAB_NAMES["two"]
    _fold_popover()


def _fold_popover() -> None:
    """A popover drawn under a new key starts closed: off the prediction it would cover (a report crossing the
    change cannot reopen it, as it could through session state)."""
    st.session_state[state.LESSON_LOADS] = st.session_state.get(state.LESSON_LOADS, 0) + 1


def _note() -> str | None:
    name = shown_example()
    return f"On the canvas: {EXAMPLES[name].title.lower()}. {EXAMPLES[name].note}" if name else None


def start_panel() -> None:
    """The lesson's opening: two sentences and the example buttons (and the note of the one on the canvas)."""
    with st.container(border=True, key="lesson_start"):
        st.markdown(INTRO)
        _buttons()
        if note := _note():
            st.caption(f"{note} Draw on it to change it.")


def examples_popover() -> None:
    """The same, folded into a popover once there is an input, with the note beside it."""
    row = st.container(horizontal=True, vertical_alignment="center", key="lesson_compact")
    key = f"lesson_popover_{st.session_state.get(state.LESSON_LOADS, 0)}"
    with row.popover("Examples", icon=":material/school:", key=key):
        st.markdown(INTRO)
        _buttons()
    if note := _note():
        row.caption(note, width="stretch")
