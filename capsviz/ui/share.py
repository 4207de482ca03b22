"""A link that restores the view: the address bar always holds the current input, model, routing
iterations and digit, so a teacher can copy it (or bookmark it) and open the same view later.

    ?src=mnist&i=1234&model=shipped&iters=3&digit=7
    ?src=image&img=<base64url of the 28x28 input, 784 bytes>&model=run:20261123-...&iters=2&digit=4

Drawn and uploaded inputs travel as the 28x28 image the model saw (1,046 characters), not as
strokes or the original file. An uploaded checkpoint cannot be named in a link.
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
import streamlit as st
import torch

from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.ui import state

SHIPPED = "shipped"
SIDE = 28


def encode_image(x: torch.Tensor) -> str:
    """(1, 28, 28) in [0, 1] -> base64url of 784 uint8 pixels."""
    pixels = (x[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (28, 28)
    return base64.urlsafe_b64encode(pixels.tobytes()).decode().rstrip("=")


def decode_image(text: str) -> torch.Tensor | None:
    """The inverse of encode_image; None for anything that is not exactly 784 pixels."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != SIDE * SIDE:
        return None
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(SIDE, SIDE)
    return torch.from_numpy(pixels.astype(np.float32) / 255).unsqueeze(0)  # (1, 28, 28)


def _int(params, name: str, low: int, high: int) -> int | None:
    try:
        value = int(params.get(name, ""))
    except ValueError:
        return None
    return value if low <= value <= high else None


def restore(*, sample_label: str, draw_label: str, shipped_option: str, run_prefix: str) -> None:
    """Once per session, before any widget: set the widgets' state from the link, ignoring what is invalid."""
    if st.session_state.get(state.SHARE_RESTORED):
        return
    st.session_state[state.SHARE_RESTORED] = True
    params = st.query_params
    model = params.get("model")
    if model == SHIPPED:
        st.session_state[state.CHECKPOINT_CHOICE] = shipped_option
    elif model and model.startswith("run:"):
        st.session_state[state.CHECKPOINT_CHOICE] = run_prefix + model.removeprefix("run:")
    iters = _int(params, "iters", 1, MAX_ROUTING_ITERS)
    if iters is not None:
        st.session_state[state.ROUTING_ITERS] = iters
    digit = _int(params, "digit", 0, 9)
    if digit is not None:
        st.session_state[state.SHARE_DIGIT] = digit
    if params.get("src") == "mnist" and (index := _int(params, "i", 0, 9_999)) is not None:
        st.session_state[state.INPUT_SOURCE] = sample_label
        st.session_state[state.SAMPLE_MODE] = "random"
        st.session_state[state.SAMPLE_INDEX] = index
        st.session_state[state.SAMPLE_PICKED_FOR] = ("random", None, None)
    elif params.get("src") == "image" and (x := decode_image(params.get("img", ""))) is not None:
        st.session_state[state.INPUT_SOURCE] = draw_label
        st.session_state[state.SHARE_IMAGE] = x


def apply_digit() -> None:
    """After the first sync of a restored view: the link's digit, not the prediction."""
    digit = st.session_state.pop(state.SHARE_DIGIT, None)
    if digit is not None:
        st.session_state[state.ROUTING_DIGIT] = digit
        st.session_state[state.POSE_CLASS] = digit


def publish(*, x: torch.Tensor, mnist_index: int | None, model_option: str, shipped_option: str, run_prefix: str,
            iters: int) -> None:  # fmt: skip
    """Write the current view into the address bar."""
    params = {"src": "mnist", "i": str(mnist_index)} if mnist_index is not None else {"src": "image"}
    if mnist_index is None:
        params["img"] = encode_image(x)
    if model_option == shipped_option:
        params["model"] = SHIPPED
    elif model_option.startswith(run_prefix):
        params["model"] = "run:" + model_option.removeprefix(run_prefix)
    params["iters"] = str(iters)
    params["digit"] = str(st.session_state.get(state.POSE_CLASS, 0))
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)
