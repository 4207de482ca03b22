"""Where the digit comes from: the drawing canvas, an MNIST test image, or an upload.

Every source goes through `capsviz.preprocess.to_mnist`, so the model always sees an
MNIST-like 28x28 image; blank input gives a friendly "draw a digit" state.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from capsviz.analysis.mistakes import find_misclassified
from capsviz.data import to_float
from capsviz.model import PAPER
from capsviz.preprocess import displayable, is_blank, open_image, to_mnist
from capsviz.ui import canvas, state
from capsviz.ui.gallery import gallery
from capsviz.ui.resources import LoadedModel, mnist_test
from capsviz.ui.text import plain

DRAW, SAMPLE, UPLOAD = "Draw", "MNIST test image", "Upload"
RANDOM, BY_CLASS, MISCLASSIFIED = "random", "by class", "misclassified"
MAX_UPLOAD_MB = 8
CANVAS_SHOWN = 280  # px, the link's image shown where the canvas would be


@dataclass
class ModelInput:
    x: torch.Tensor | None  # (1, 28, 28) in [0, 1], None when there is nothing to classify
    label: int | None = None  # the true label, for MNIST images
    index: int | None = None  # the MNIST test image's index
    message: str | None = None  # why x is None, for the user
    error: bool = False

    @property
    def key(self) -> str:
        """Identifies the input, so per-input widgets (pose sliders) reset when it changes."""
        if self.x is None:
            return "none"
        return hashlib.sha1(self.x.numpy().tobytes()).hexdigest()[:16]


def model_input(loaded: LoadedModel, routing_iters: int) -> ModelInput:
    sources = [DRAW, SAMPLE, UPLOAD]
    source = state.widget(st.radio, "Input", sources, horizontal=True, key=state.INPUT_SOURCE, default=DRAW)
    if source == DRAW and st.session_state.get(state.SHARE_IMAGE) is not None:
        return _from_link()
    if source == DRAW:
        return _from_canvas()
    canvas.left()
    if source == SAMPLE:
        return _from_mnist(loaded, routing_iters)
    return _from_upload()


def _discard_link_image() -> None:
    st.session_state.pop(state.SHARE_IMAGE, None)


def _from_link() -> ModelInput:
    """The 28x28 input a shared link carried, shown until the user draws their own; blank, like a blank canvas."""
    x = st.session_state[state.SHARE_IMAGE]
    st.image(_enlarged(x), caption="the input from the link (28x28)", width=CANVAS_SHOWN)
    st.button("Draw your own", key=state.SHARE_DISCARD, on_click=_discard_link_image, icon=":material/edit:")
    if is_blank(x[0].numpy()):
        return ModelInput(None, message="The link's image is blank: draw a digit.")
    return ModelInput(x)


def _from_canvas() -> ModelInput:
    st.caption("Draw one digit, large or small, anywhere on the black square. Undo and Clear are under it.")
    image = canvas.draw_canvas()
    if image is None:
        return ModelInput(None, message="Draw a digit on the canvas.")
    return _preprocessed(image, "The canvas is empty: draw a digit.")


def _from_upload() -> ModelInput:
    upload = st.file_uploader(
        "A picture of one digit (PNG or JPEG; dark on light or light on dark)",
        type=["png", "jpg", "jpeg"],
        key=state.UPLOAD,
    )
    kept = st.session_state.get(state.UPLOAD_DECODED)
    if upload is None:
        if kept is not None and st.session_state.get(state.UPLOAD_AWAY):
            st.caption("Your last upload, kept while another tab was open: upload a file to replace it.")
            return _shown(*kept[1:])
        st.session_state.pop(state.UPLOAD_DECODED, None)  # removed with its x: forgotten
        return ModelInput(None, message="Upload a picture of a digit.")
    st.session_state.pop(state.UPLOAD_AWAY, None)
    identity = (upload.file_id, upload.size)
    if kept is None or kept[0] != identity:  # decode once per upload, not on every rerun
        kept = (identity, *_decode_upload(upload))
        st.session_state[state.UPLOAD_DECODED] = kept
    return _shown(*kept[1:])


def left() -> None:
    """Called on a run without the Explore tab: Streamlit empties its file uploader, the upload is kept."""
    if state.UPLOAD_DECODED in st.session_state:
        st.session_state[state.UPLOAD_AWAY] = True


PREVIEW_SIDE = 280  # px: the original picture is kept this small, beside the 28x28 the model sees


def _decode_upload(upload) -> tuple[ModelInput, bytes | None]:
    """The upload -> (what the model reads, a small PNG of the original picture to show beside it)."""
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        message = f"That file is over {MAX_UPLOAD_MB} MB: please upload a smaller image."
        return ModelInput(None, message=message, error=True), None
    try:
        result = _preprocessed(upload.getvalue(), "That image looks blank: no digit found.")
        preview = open_image(upload.getvalue())  # the size was checked from the header when it was preprocessed
    except ValueError:
        message = f"Could not read {plain(upload.name)} as an image: it is not a PNG or JPEG picture, or it is damaged."
        return ModelInput(None, message=message, error=True), None
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    displayable(preview).save(buffer, format="PNG")  # a 16-bit scan scaled by its own depth, not clipped
    return result, buffer.getvalue()


def _shown(result: ModelInput, preview: bytes | None) -> ModelInput:
    """The original picture beside what the model sees, on every run."""
    if preview is not None:
        original, made = st.columns(2)
        original.image(preview, caption="your picture", width="stretch")
        if result.x is not None:
            made.image(_enlarged(result.x), caption="what the model sees (28x28)", width="stretch")
    return result


def _enlarged(x: torch.Tensor, scale: int = 8) -> np.ndarray:
    """(1, 28, 28) in [0, 1] -> (28*scale, 28*scale) uint8, nearest neighbour, so pixels stay visible."""
    pixels = (x[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (28, 28)
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1)  # (28*s, 28*s)


def _preprocessed(image, blank_message: str) -> ModelInput:
    x = to_mnist(image)
    return ModelInput(x, message=None if x is not None else blank_message)


def _from_mnist(loaded: LoadedModel, routing_iters: int) -> ModelInput:
    split, problem = mnist_test()
    if split is None:
        return ModelInput(None, message=problem, error=True)
    modes = [RANDOM, BY_CLASS, MISCLASSIFIED]
    mode = state.widget(st.radio, "Which image", modes, horizontal=True, key=state.SAMPLE_MODE, default=RANDOM)
    digits = range(PAPER.num_classes)
    digit = state.widget(st.selectbox, "Digit", digits, key=state.SAMPLE_DIGIT, default=0) if mode == BY_CLASS else None
    rng = np.random.default_rng()
    wanted = (mode, digit, loaded.key if mode == MISCLASSIFIED else None)
    another = st.button("Another one", key=state.SAMPLE_NEXT)
    if another or st.session_state.get(state.SAMPLE_PICKED_FOR) != wanted:
        st.session_state[state.SAMPLE_INDEX] = _pick(split, mode, digit, loaded, routing_iters, rng)
        st.session_state[state.SAMPLE_PICKED_FOR] = wanted
    if mode == MISCLASSIFIED:
        gallery(loaded, split, routing_iters, wanted)
    index = st.session_state[state.SAMPLE_INDEX]
    if index is None:
        return ModelInput(None, message="No misclassified image found in the images searched; try again.")
    label = int(split.labels[index])
    st.caption(f"MNIST test image #{index}, labelled **{label}**")
    x = to_float(split.images[index : index + 1])[0]  # (1, 28, 28), already MNIST-made
    return ModelInput(x, label=label, index=index)


def _pick(split, mode, digit, loaded: LoadedModel, routing_iters: int, rng) -> int | None:
    if mode == BY_CLASS:
        candidates = torch.nonzero(split.labels == digit).flatten().numpy()
        return int(rng.choice(candidates))
    if mode == MISCLASSIFIED:
        return _search_misclassified(split, loaded, routing_iters, rng)
    return int(rng.integers(len(split)))


def _search_misclassified(split, loaded: LoadedModel, routing_iters: int, rng) -> int | None:
    """Search random test images until the model gets one wrong, saying so while it searches."""
    order = torch.from_numpy(rng.permutation(len(split)))
    with st.status("Searching the test set for an image this model gets wrong...") as status:
        bar = st.progress(0.0)

        def report(done: int, total: int) -> None:
            bar.progress(done / total, text=f"{done:,} of up to {total:,} images checked")

        index, searched = find_misclassified(loaded.model, split, order, routing_iters=routing_iters, on_batch=report)
        found = f"found #{index}" if index is not None else "none found"
        status.update(label=f"Searched {searched:,} random test images: {found}.", state="complete", expanded=False)
    return index
