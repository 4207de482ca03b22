"""A first, minimal page: upload a digit, see the model input and the 10 capsule lengths.

The full explorer (drawing canvas, routing per iteration, pose sliders, training) is
being built on top of the same package; this page already runs the shipped model offline.
"""

from __future__ import annotations

import streamlit as st
import torch

from capsviz.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_checkpoint
from capsviz.preprocess import to_mnist

UPLOAD_KEY = "upload"
MAX_UPLOAD_MB = 8


@st.cache_resource
def shipped_model(path: str):
    """Loaded once per process; never mutated (inference only, under no_grad)."""
    return load_checkpoint(path)


def main() -> None:
    st.set_page_config(page_title="capsviz", layout="wide")
    st.title("capsviz: Capsule Networks, explored")
    try:
        model, card = shipped_model(str(SHIPPED_CHECKPOINT))
    except CheckpointError as exc:
        st.error(f"The shipped model could not be loaded: {exc}")
        return
    accuracy = card.get("test_accuracy")
    st.caption(
        f"Model: {SHIPPED_CHECKPOINT.name}, {card.get('epochs', '?')} epochs, "
        + (f"MNIST test accuracy {accuracy:.2%}" if accuracy is not None else "accuracy not measured")
    )
    upload = st.file_uploader("A digit (PNG or JPEG, any polarity)", type=["png", "jpg", "jpeg"], key=UPLOAD_KEY)
    if upload is None:
        st.info("Upload a picture of a digit to classify it.")
        return
    if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"That file is over {MAX_UPLOAD_MB} MB; please upload a smaller image.")
        return
    try:
        x = to_mnist(upload.getvalue())
    except ValueError as exc:
        st.error(f"Could not read that file as an image: {exc}")
        return
    if x is None:
        st.info("That image looks blank: draw a digit.")
        return
    with torch.no_grad():
        out = model(x.unsqueeze(0))
    lengths = out.lengths[0]
    left, right = st.columns([1, 2])
    left.image(x[0].numpy(), caption="what the model sees (28x28)", width=196, clamp=True)
    left.image(out.reconstruction[0, 0].numpy(), caption="reconstruction", width=196, clamp=True)
    right.metric("prediction", int(lengths.argmax()), f"capsule length {float(lengths.max()):.3f}")
    right.bar_chart({"capsule length": lengths.tolist()})
