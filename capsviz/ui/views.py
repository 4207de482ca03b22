"""The explorer's views for one input: prediction and lengths, poses (routing: `capsviz.ui.routing`).

The Inference is read from the input's routing X-ray, computed once per input
(`capsviz.ui.routing.full_xray`; `python -m capsviz.bench` times it); the pose sliders live in
a fragment, so dragging one reruns only the decoder and its image.
"""

from __future__ import annotations

import time

import streamlit as st

from capsviz import perturb, viz
from capsviz.inference import Inference
from capsviz.losses import M_MINUS, M_PLUS
from capsviz.model import PAPER, CapsNet
from capsviz.ui import state
from capsviz.ui.inputs import ModelInput

PLOT_CONFIG = {"displayModeBar": False}
SLIDER_STEP = 0.01
POSE_COLUMNS = 4


def sync_to_input(source: ModelInput, result: Inference) -> None:
    """A new input resets the per-input widgets: sliders to zero, digits to the prediction."""
    keys = [state.ROUTING_DIGIT, state.POSE_CLASS] + [state.POSE_DIM.format(d) for d in range(PAPER.digit_dim)]
    if st.session_state.get(state.POSE_INPUT_ID) == source.key and all(k in st.session_state for k in keys):
        return
    st.session_state[state.POSE_INPUT_ID] = source.key
    st.session_state[state.ROUTING_DIGIT] = result.predicted
    st.session_state[state.POSE_CLASS] = result.predicted
    reset_sliders()


def reset_sliders() -> None:
    for d in range(PAPER.digit_dim):
        st.session_state[state.POSE_DIM.format(d)] = 0.0


def prediction(result: Inference, label: int | None) -> None:
    st.metric("Prediction", result.predicted)
    st.caption(f"capsule {result.predicted} has length {result.lengths[result.predicted]:.3f}")
    if label is not None:
        verdict = "correct" if label == result.predicted else "**wrong**"
        st.markdown(f"True label: **{label}** ({verdict})")
    left, right = st.columns(2)
    left.plotly_chart(viz.image_figure(result.image, "model input"), config=PLOT_CONFIG, key="fig_input")
    right.plotly_chart(
        viz.image_figure(result.reconstruction, "reconstruction"),
        config=PLOT_CONFIG,
        key="fig_recon",
    )


def lengths_chart(result: Inference) -> None:
    st.plotly_chart(viz.lengths_figure(result.lengths, result.predicted), config=PLOT_CONFIG, key="fig_lengths")
    st.caption(
        "Each bar is the length of a digit capsule: the network's confidence that the digit is present. "
        f"Training pushes the true digit above m+ = {M_PLUS} and the others below m- = {M_MINUS}."
    )


@st.fragment
def poses(model: CapsNet, result: Inference, input_id: str) -> None:
    """16 sliders perturb one digit capsule's pose; only this fragment reruns as they move.

    `input_id` names the (model, input, routing) the result belongs to, for the grid cache.
    The fragment times itself (server side, in session state) for the caption and the benchmark.
    """
    start = time.perf_counter()
    st.subheader(f"What the {PAPER.digit_dim} pose dimensions mean")
    left, right = st.columns([3, 1])
    with right:
        digit = st.selectbox("Reconstruct as digit", range(PAPER.num_classes), key=state.POSE_CLASS)
        st.button("Reset all to 0", key=state.POSE_RESET, on_click=reset_sliders)
    with left:
        columns = st.columns(POSE_COLUMNS)
        deltas = [
            columns[d % POSE_COLUMNS].slider(
                f"dim {d}",
                -perturb.PAPER_RANGE,
                perturb.PAPER_RANGE,
                step=SLIDER_STEP,
                key=state.POSE_DIM.format(d),
            )
            for d in range(PAPER.digit_dim)
        ]
    pose = perturb.perturb(result.poses[digit], deltas)
    image = perturb.decode_pose(model, pose, digit)
    with right:
        st.plotly_chart(viz.image_figure(image, f"decoded as {digit}"), config=PLOT_CONFIG, key="fig_pose")
    with st.expander("The paper's Figure 4 for this input: every dimension from -0.25 to 0.25"):
        png = _figure4_png(model, result, f"{input_id}:{digit}", digit)
        st.image(png, caption=f"rows: dimensions 0-{PAPER.digit_dim - 1}; columns: -0.25 ... +0.25 (digit {digit})")
        st.download_button("Download PNG", png, file_name=f"capsviz-pose-grid-{digit}.png", key="pose_grid_download")
    elapsed = time.perf_counter() - start
    st.session_state[state.POSE_SECONDS] = elapsed
    right.caption(f"This panel updated in {elapsed * 1000:.0f} ms on the server.")


def _figure4_png(model: CapsNet, result: Inference, cache_key: str, digit: int) -> bytes:
    """The 16 x 11 decoder grid does not depend on the sliders: compute it once per input and digit."""
    cached = st.session_state.get(state.POSE_GRID)
    if cached is None or cached[0] != cache_key:
        png = perturb.grid_to_png(perturb.perturbation_grid(model, result.poses[digit], digit))
        st.session_state[state.POSE_GRID] = cached = (cache_key, png)
    return cached[1]
