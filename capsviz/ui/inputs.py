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

from capsviz.analysis.mistakes import find_misclassified
from capsviz.data import to_float
from capsviz.model import PAPER
from capsviz.preprocess import (
    FULL,
    MAX_THRESHOLD,
    Crop,
    displayable,
    from_ink,
    ink_map,
    is_blank,
    open_image,
    to_mnist,
)
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
    canvas.hidden()
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
            return _shown(kept[1])
        st.session_state.pop(state.UPLOAD_DECODED, None)  # removed with its x: forgotten
        return ModelInput(None, message="Upload a picture of a digit.")
    st.session_state.pop(state.UPLOAD_AWAY, None)
    identity = (upload.file_id, upload.size)
    if kept is None or kept[0] != identity:  # decode once per upload, not on every rerun
        kept = (identity, _decode_upload(upload))
        st.session_state[state.UPLOAD_DECODED] = kept
        _reset_photo_controls()  # a new picture starts uncropped
    return _shown(kept[1])


def hidden() -> None:
    """Called on a run without the Explore tab: Streamlit empties its file uploader, the upload is kept."""
    if state.UPLOAD_DECODED in st.session_state:
        st.session_state[state.UPLOAD_AWAY] = True


PREVIEW_SIDE = 280  # px: the original picture is kept this small, beside the 28x28 the model sees
CROP_COLOR = (228, 87, 46)  # the crop's outline on the picture (capsviz.figures.viz.HIGHLIGHT)
PHOTO_DEFAULTS = {state.UPLOAD_CROP_X: (0, 100), state.UPLOAD_CROP_Y: (0, 100), state.UPLOAD_THRESHOLD: 0}


@dataclass
class Decoded:
    """An upload read once: its ink map (None when unreadable, with `problem` saying why) and a small preview."""

    ink: np.ndarray | None  # (H, W) in [0, 1], from capsviz.preprocess.ink_map
    preview: np.ndarray | None = None  # (h, w, 3) uint8, at most PREVIEW_SIDE a side
    problem: ModelInput | None = None


def _decode_upload(upload) -> Decoded:
    """The upload -> its ink map (light flattened), and a small copy of the original picture to show beside it."""
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        message = f"That file is over {MAX_UPLOAD_MB} MB: please upload a smaller image."
        return Decoded(None, problem=ModelInput(None, message=message, error=True))
    try:
        ink = ink_map(upload.getvalue())
        preview = open_image(upload.getvalue())  # the size was checked from the header when it was read
    except ValueError:
        message = f"Could not read {plain(upload.name)} as an image: it is not a PNG or JPEG picture, or it is damaged."
        return Decoded(None, problem=ModelInput(None, message=message, error=True))
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return Decoded(ink, np.asarray(displayable(preview).convert("RGB")))  # a 16-bit scan scaled by its own depth


def _reset_photo_controls() -> None:
    for key, value in PHOTO_DEFAULTS.items():
        state.put(key, value)


def _shown(decoded: Decoded) -> ModelInput:
    """The crop and threshold controls, the picture with its crop outlined and the 28x28 the model sees."""
    if decoded.problem is not None:
        return decoded.problem
    original, made = st.columns(2)
    picture, result = original.empty(), made.empty()
    crop_x = state.widget(
        st.slider,
        "Crop: left to right (%)",
        0,
        100,
        step=1,
        key=state.UPLOAD_CROP_X,
        default=PHOTO_DEFAULTS[state.UPLOAD_CROP_X],
    )
    crop_y = state.widget(
        st.slider,
        "Crop: top to bottom (%)",
        0,
        100,
        step=1,
        key=state.UPLOAD_CROP_Y,
        default=PHOTO_DEFAULTS[state.UPLOAD_CROP_Y],
    )
    threshold = state.widget(
        st.slider,
        "Ignore ink fainter than (%)",
        0,
        round(MAX_THRESHOLD * 100),
        step=5,
        key=state.UPLOAD_THRESHOLD,
        default=PHOTO_DEFAULTS[state.UPLOAD_THRESHOLD],
        help="Raise it when smudges or blotchy paper show up in the 28x28: ink fainter than this share of the "
        "strongest becomes background, the rest is stretched to full strength.",
    )
    st.button("Reset crop and threshold", key=state.UPLOAD_RESET, on_click=_reset_photo_controls)
    crop = (crop_y[0] / 100, crop_x[0] / 100, crop_y[1] / 100, crop_x[1] / 100)  # (top, left, bottom, right)
    picture.image(outlined(decoded.preview, crop), caption="your picture", width="stretch")
    if crop_x[0] >= crop_x[1] or crop_y[0] >= crop_y[1]:
        return ModelInput(None, message="The crop is empty: widen it.")
    x = from_ink(decoded.ink, crop=crop, threshold=threshold / 100)
    if x is None and crop == FULL and not threshold:
        return ModelInput(None, message="That image looks blank: no digit found.")
    if x is None:
        return ModelInput(None, message="No digit found in the crop: move or widen it, or lower the threshold.")
    result.image(_enlarged(x), caption="what the model sees (28x28)", width="stretch")
    return ModelInput(x)


def outlined(preview: np.ndarray, crop: Crop) -> np.ndarray:
    """(h, w, 3) preview with the crop (top, left, bottom, right as shares) outlined, 2 px, inside the picture."""
    h, w = preview.shape[:2]
    top, left = min(int(crop[0] * h), h - 1), min(int(crop[1] * w), w - 1)
    bottom, right = max(round(crop[2] * h), top + 1), max(round(crop[3] * w), left + 1)
    if (top, left, bottom, right) == (0, 0, h, w):
        return preview
    out = preview.copy()
    for rows, cols in (
        (slice(top, top + 2), slice(left, right)),
        (slice(bottom - 2, bottom), slice(left, right)),
        (slice(top, bottom), slice(left, left + 2)),
        (slice(top, bottom), slice(right - 2, right)),
    ):
        out[rows, cols] = CROP_COLOR
    return out


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


def will_search(loaded: LoadedModel) -> bool:
    """Whether this run searches the test set for a misclassified image (before the input's widgets are drawn)."""
    if state.value(state.INPUT_SOURCE) != SAMPLE or state.value(state.SAMPLE_MODE) != MISCLASSIFIED:
        return False
    wanted = (MISCLASSIFIED, None, loaded.key)
    return bool(st.session_state.get(state.SAMPLE_NEXT)) or st.session_state.get(state.SAMPLE_PICKED_FOR) != wanted


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
