"""Where the digit comes from: the drawing canvas, an MNIST test image, or an upload.

Every source goes through `capsviz.preprocess.to_mnist`, so the model always sees an
MNIST-like 28x28 image; blank input gives a friendly "draw a digit" state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from capsviz.model import PAPER
from capsviz.preprocess import to_mnist
from capsviz.ui import state
from capsviz.ui.resources import LoadedModel, mnist_test

DRAW, SAMPLE, UPLOAD = "Draw", "MNIST test image", "Upload"
RANDOM, BY_CLASS, MISCLASSIFIED = "random", "by class", "misclassified"
CANVAS_SIZE = 280
MAX_UPLOAD_MB = 8
SEARCH_BATCH = 250


@dataclass
class ModelInput:
    x: torch.Tensor | None  # (1, 28, 28) in [0, 1], None when there is nothing to classify
    label: int | None = None  # the true label, for MNIST images
    message: str | None = None  # why x is None, for the user
    error: bool = False

    @property
    def key(self) -> str:
        """Identifies the input, so per-input widgets (pose sliders) reset when it changes."""
        if self.x is None:
            return "none"
        return hashlib.sha1(self.x.numpy().tobytes()).hexdigest()[:16]


def draw_canvas(stroke_width: int) -> np.ndarray | None:
    """The drawing canvas (white on black, like MNIST) -> RGBA array, or None before any drawing.

    The only place that knows about streamlit-drawable-canvas, so it can be replaced.
    """
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=stroke_width,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=CANVAS_SIZE,
        width=CANVAS_SIZE,
        drawing_mode="freedraw",
        return_image_data=True,
        key=state.CANVAS,
    )
    return result.image_data


def model_input(loaded: LoadedModel, routing_iters: int) -> ModelInput:
    source = st.radio("Input", [DRAW, SAMPLE, UPLOAD], horizontal=True, key=state.INPUT_SOURCE)
    if source == DRAW:
        return _from_canvas()
    if source == SAMPLE:
        return _from_mnist(loaded, routing_iters)
    return _from_upload()


def _from_canvas() -> ModelInput:
    width = st.slider("Stroke width", 6, 40, 20, key=state.STROKE_WIDTH)
    st.caption("Draw one digit, large or small, anywhere. The toolbar under the canvas has undo and clear.")
    image = draw_canvas(width)
    if image is None:
        return ModelInput(None, message="Draw a digit on the canvas.")
    return _preprocessed(image, "The canvas is empty: draw a digit.")


def _from_upload() -> ModelInput:
    upload = st.file_uploader(
        "A picture of one digit (PNG or JPEG; dark on light or light on dark)",
        type=["png", "jpg", "jpeg"],
        key=state.UPLOAD,
    )
    if upload is None:
        return ModelInput(None, message="Upload a picture of a digit.")
    identity = (upload.file_id, upload.size)
    decoded = st.session_state.get(state.UPLOAD_DECODED)
    if decoded is None or decoded[0] != identity:  # decode once per upload, not on every rerun
        decoded = (identity, _decode_upload(upload))
        st.session_state[state.UPLOAD_DECODED] = decoded
    return decoded[1]


def _decode_upload(upload) -> ModelInput:
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        return ModelInput(
            None, message=f"That file is over {MAX_UPLOAD_MB} MB: please upload a smaller image.", error=True
        )
    try:
        return _preprocessed(upload.getvalue(), "That image looks blank: no digit found.")
    except ValueError as exc:
        return ModelInput(None, message=f"Could not read that file as an image ({exc}).", error=True)


def _preprocessed(image, blank_message: str) -> ModelInput:
    x = to_mnist(image)
    return ModelInput(x, message=None if x is not None else blank_message)


def _from_mnist(loaded: LoadedModel, routing_iters: int) -> ModelInput:
    split, problem = mnist_test()
    if split is None:
        return ModelInput(None, message=problem, error=True)
    mode = st.radio("Which image", [RANDOM, BY_CLASS, MISCLASSIFIED], horizontal=True, key=state.SAMPLE_MODE)
    digit = st.selectbox("Digit", range(PAPER.num_classes), key=state.SAMPLE_DIGIT) if mode == BY_CLASS else None
    rng = np.random.default_rng()
    wanted = (mode, digit, loaded.key if mode == MISCLASSIFIED else None)
    another = st.button("Another one", key=state.SAMPLE_NEXT)
    if another or st.session_state.get(state.SAMPLE_PICKED_FOR) != wanted:
        st.session_state[state.SAMPLE_INDEX] = _pick(split, mode, digit, loaded, routing_iters, rng)
        st.session_state[state.SAMPLE_PICKED_FOR] = wanted
    index = st.session_state[state.SAMPLE_INDEX]
    if index is None:
        return ModelInput(None, message="No misclassified image found in the images searched; try again.")
    label = int(split.labels[index])
    st.caption(f"MNIST test image #{index}, labelled **{label}**")
    x = split.images[index].float().div(255).unsqueeze(0)  # (1, 28, 28), already MNIST-made
    return ModelInput(x, label=label)


def _pick(split, mode, digit, loaded: LoadedModel, routing_iters: int, rng) -> int | None:
    if mode == BY_CLASS:
        candidates = torch.nonzero(split.labels == digit).flatten().numpy()
        return int(rng.choice(candidates))
    if mode == MISCLASSIFIED:
        return _find_misclassified(split, loaded, routing_iters, rng)
    return int(rng.integers(len(split)))


def _find_misclassified(split, loaded: LoadedModel, routing_iters: int, rng, max_batches: int = 20) -> int | None:
    """Search random test images in batches until the model gets one wrong."""
    order = torch.from_numpy(rng.permutation(len(split)))
    device = next(loaded.model.parameters()).device
    with torch.no_grad():
        for start in range(0, min(len(split), max_batches * SEARCH_BATCH), SEARCH_BATCH):
            idx = order[start : start + SEARCH_BATCH]
            x = split.images[idx].float().div(255).unsqueeze(1).to(device)  # (b, 1, 28, 28)
            predicted = loaded.model(x, routing_iters=routing_iters).lengths.argmax(1).cpu()
            wrong = torch.nonzero(predicted != split.labels[idx]).flatten()
            if len(wrong):
                return int(idx[wrong[0]])
    return None
