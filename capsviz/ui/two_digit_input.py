"""The Two digits tab's picture: a fixed MultiMNIST test pair, two MNIST test digits chosen by class and shifted by
hand (as training shifts them), or the Explore tab's input at the centre of the two-digit canvas."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from capsviz import multimnist
from capsviz.analysis.two_digits import centred, from_two_colours
from capsviz.data import DataUnavailableError, Split, load_mnist
from capsviz.multimnist import MAX_SHIFT
from capsviz.ui import canvas, state
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain

PAIR, DIGITS, DRAWN = "A MultiMNIST test pair", "Two test digits, by class", "Draw two digits (two pens)"
EXPLORED = "The Explore tab's input"
SOURCES = (PAIR, DIGITS, DRAWN, EXPLORED)
PENS = {"first digit (red)": "#FF0000", "second digit (blue)": "#0000FF"}  # one colour channel each
CANVAS = canvas.CanvasKeys(
    "two_canvas", "two_canvas_memory", "two_canvas_undo", "two_canvas_clear", "two_stroke_width",
    "two_canvas_buttons", "two_pen_popover", additive=True,
)  # fmt: skip
SHIFTS = ("first digit, across", "first digit, down", "second digit, across", "second digit, down")


@dataclass(frozen=True)
class Picture:
    """What the tab reads: x (1, 36, 36) in [0, 1]; for MNIST digits, their labels and their single images
    (2, 36, 36) in [0, 1], the segmentation's ground truth."""

    x: torch.Tensor
    labels: tuple[int, int] | None = None
    singles: torch.Tensor | None = None


@st.cache_resource(show_spinner="Loading the MNIST test digits...")
def _test_digits(root: str | None) -> Split:
    return load_mnist(root, train=False)


@st.cache_resource(show_spinner="Composing the 10,000 MultiMNIST test pairs...")
def _test_pairs(root: str | None) -> multimnist.Pairs:
    return multimnist.fixed_test_pairs(_test_digits(root))


def pair_input() -> Picture | None:
    source = state.widget(st.radio, "Two digits from", SOURCES, key=state.TWO_SOURCE, default=PAIR)
    if source != DRAWN:
        canvas.hidden(CANVAS)  # the two-pen canvas remounts with its drawing
    if source == DRAWN:
        return _drawn()
    if source == EXPLORED:
        return _explored()
    try:
        root = os.environ.get("CAPSVIZ_DATA")
        return _test_pair(_test_pairs(root)) if source == PAIR else _by_class(_test_digits(root))
    except DataUnavailableError as exc:
        st.error(plain(str(exc), MAX_MESSAGE_CHARS))
        return None


def read_explored() -> None:
    """A button's callback: the Two digits tab, reading the Explore tab's input."""
    state.put(state.TWO_SOURCE, EXPLORED)
    st.session_state[state.TABS] = state.TAB_NAMES["two"]


def hidden() -> None:
    """Called on a run without this tab: the two-pen canvas remounts with its drawing."""
    canvas.hidden(CANVAS)


def _drawn() -> Picture | None:
    pen = state.widget(st.radio, "Pen", tuple(PENS), key=state.TWO_PEN, default=next(iter(PENS)), horizontal=True)
    drawing = canvas.draw_canvas(CANVAS, PENS[pen])
    fitted = from_two_colours(drawing[..., :3]) if drawing is not None else None
    if fitted is None:
        st.info("Draw one digit with the red pen and another over it with the blue pen, overlapping as in the test "
                "pairs: both are fitted together onto the 36x36 canvas.")  # fmt: skip
        return None
    x, singles = fitted
    st.caption("The two inks, fitted together onto the 36x36 canvas; red and blue tell the model nothing, only the "
               "segmentation below.")  # fmt: skip
    return Picture(x, None, singles)


def _explored() -> Picture | None:
    explored = st.session_state.get(state.LAB_INPUT)
    if explored is None or explored.x is None:
        st.info("Draw, upload or pick a digit in the Explore tab first: it is read here on the 36x36 canvas.")
        return None
    st.caption("The Explore tab's 28x28 input, at the centre of the 36x36 two-digit canvas.")
    return Picture(centred(explored.x))


def _test_pair(pairs: multimnist.Pairs) -> Picture:
    last = len(pairs.labels) - 1
    index = state.widget(st.number_input, "Test pair", key=state.TWO_PAIR, default=0, min_value=0, max_value=last,
                         step=1, fits=lambda v: isinstance(v, int) and 0 <= v <= last)  # fmt: skip
    st.button("Random pair", key=state.TWO_RANDOM, on_click=_random_pair, args=(last,))
    labels = tuple(pairs.labels[index].tolist())
    st.caption(f"Test pair #{index}: a {labels[0]} and a {labels[1]}, each shifted by up to 4 px, overlaid.")
    return Picture(pairs.images[index].float().div(255)[None], labels, pairs.singles[index].float().div(255))


def _random_pair(last: int) -> None:
    state.put(state.TWO_PAIR, int(np.random.default_rng().integers(0, last + 1)))


def _by_class(digits: Split) -> Picture:
    first, second = st.columns(2)
    linked = _valid(digits, st.session_state.get(state.TWO_PICKED))  # a link's digits give the classes their start
    start = [int(digits.labels[i]) for i in linked] if linked else [3, 5]
    a = state.widget(first.selectbox, "First digit", range(10), key=state.TWO_CLASS.format(0), default=start[0])
    b = state.widget(second.selectbox, "Second digit", range(10), key=state.TWO_CLASS.format(1), default=start[1])
    if a == b:
        st.warning("MultiMNIST pairs two different digits: pick two classes.")
    picked = _picked(digits, (a, b))
    st.button("New digits", key=state.TWO_NEW, on_click=_new_digits, args=(digits, (a, b)))
    shifts = [
        state.widget(st.slider, label, -MAX_SHIFT, MAX_SHIFT, key=state.TWO_SHIFT.format(k), default=0)
        for k, label in enumerate(SHIFTS)
    ]  # px, as training shifts each digit
    offsets = torch.tensor(shifts).view(2, 2).flip(-1) + MAX_SHIFT  # (K, 2) (row, col) of each frame
    plan = multimnist.PairPlan(torch.tensor(picked[:1]), torch.tensor(picked[1:]), offsets[None])
    pair = multimnist.compose(digits, plan)
    st.caption(f"MNIST test digits #{picked[0]} (a {a}) and #{picked[1]} (a {b}), overlaid as in training.")
    return Picture(pair.images[0].float().div(255)[None], (a, b), pair.singles[0].float().div(255))


def _picked(digits: Split, classes: tuple[int, int]) -> tuple[int, int]:
    """The test digits shown for these classes: kept until the classes change or "New digits" is pressed."""
    picked = _valid(digits, st.session_state.get(state.TWO_PICKED))
    if picked is None or tuple(int(digits.labels[i]) for i in picked) != classes:
        picked = _draw(digits, classes, np.random.default_rng(0))  # the same first digits for everyone
        st.session_state[state.TWO_PICKED] = picked
    return picked


def _valid(digits: Split, picked) -> tuple[int, int] | None:
    """Two indices of this test set (a link may name ones a smaller one does not have), else None."""
    if isinstance(picked, tuple) and len(picked) == 2 and all(isinstance(i, int) and 0 <= i < len(digits)
                                                              for i in picked):  # fmt: skip
        return picked
    return None


def _new_digits(digits: Split, classes: tuple[int, int]) -> None:
    st.session_state[state.TWO_PICKED] = _draw(digits, classes, np.random.default_rng())


def _draw(digits: Split, classes: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    labels = digits.labels.numpy()
    return tuple(int(rng.choice(np.flatnonzero(labels == c))) for c in classes)
