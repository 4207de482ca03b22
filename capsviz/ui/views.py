"""The explorer's views for one input: prediction and lengths, poses (routing: `capsviz.ui.routing`).

The Inference is read from the input's routing X-ray, computed once per input
(`capsviz.ui.routing.full_xray`; `python -m capsviz.bench` times it); the pose sliders live in
a fragment, so dragging one reruns only the decoder and its image.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import streamlit as st

from capsviz.analysis import perturb
from capsviz.analysis.inference import Inference
from capsviz.figures import viz
from capsviz.losses import M_MINUS, M_PLUS
from capsviz.model import PAPER, CapsNet
from capsviz.ui import share, state
from capsviz.ui.inputs import ModelInput
from capsviz.ui.live_decoder import live_decoder
from capsviz.ui.widgets import PLOT_CONFIG, for_screen, kept_expander
from capsviz.verdict import SURE, TWO, verdict

SLIDER_STEP = 0.01
POSE_COLUMNS = 4


def view_id(model_key: str, source: ModelInput, routing_iters: int) -> str:
    """What the per-input widgets belong to: the model, the input and the routing iterations."""
    return f"{model_key}:{source.key}:{routing_iters}"


def sync_to_input(view: str, result: Inference) -> None:
    """A new model, input or routing count resets the per-input widgets: sliders to 0, digits to the prediction."""
    keys = [state.ROUTING_DIGIT, state.POSE_CLASS] + [state.POSE_DIM.format(d) for d in range(PAPER.digit_dim)]
    if st.session_state.get(state.VIEW_ID) == view and all(state.known(k) for k in keys):
        return
    st.session_state[state.VIEW_ID] = view
    state.put(state.ROUTING_DIGIT, result.predicted)
    state.put(state.POSE_CLASS, result.predicted)
    reset_sliders()


def reset_sliders() -> None:
    for d in range(PAPER.digit_dim):
        state.put(state.POSE_DIM.format(d), 0.0)
    st.session_state[state.POSE_NONCE] = st.session_state.get(state.POSE_NONCE, 0) + 1


def prediction(result: Inference, label: int | None, two_digits: Callable[[], None] | None = None) -> None:
    """The verdict on this input; when two capsules are long, a button calls `two_digits` (which opens the Two
    digits tab on this input, in this page: same model, nothing lost)."""
    said = verdict(result.lengths)
    st.metric(said.label, said.value)
    if said.kind == SURE:
        st.caption(said.note)
    else:
        st.warning(said.note, icon=":material/help:")
    if said.kind == TWO and two_digits is not None:
        st.button("Read it as two digits", key=state.READ_AS_TWO, on_click=two_digits, icon=":material/filter_2:")
    if label is not None:
        mark = "correct" if label == result.predicted else "**wrong**"
        st.markdown(f"True label: **{label}** ({mark})")
    left, right = st.columns(2)
    left.plotly_chart(for_screen(viz.image_figure(result.image, "model input")), config=PLOT_CONFIG, key="fig_input")
    right.plotly_chart(
        for_screen(viz.image_figure(result.reconstruction, "reconstruction")),
        config=PLOT_CONFIG,
        key="fig_recon",
    )


def each_digit(model: CapsNet, result: Inference) -> None:
    """The input read as each of the ten digits: capsule j's own pose through the decoder."""
    images = perturb.as_each_digit(model, result.poses)  # (10, 28, 28)
    st.plotly_chart(
        for_screen(viz.digit_strip_figure(images, result.lengths, result.predicted)),
        config=PLOT_CONFIG,
        key="fig_each_digit",
    )
    among, to_winner = perturb.alikeness(images, result.predicted)
    others = np.delete(result.lengths, result.predicted)
    short = others.max() < 0.5 and among < to_winner  # the usual case: say why the nine look alike
    why = " Such short capsules give the decoder little to draw from, so their images look alike." if short else ""
    st.caption(
        f"Each image is the decoder's drawing from one capsule's pose alone, the other nine masked. The capsules "
        f"other than {result.predicted} are {others.min():.2f} to {others.max():.2f} long here, and their images "
        f"differ from one another by {among * 255:.0f} grey levels a pixel on average, and from the "
        f"{result.predicted}'s by {to_winner * 255:.0f}.{why}"
    )


def lengths_chart(result: Inference) -> None:
    st.plotly_chart(
        for_screen(viz.lengths_figure(result.lengths, result.predicted)), config=PLOT_CONFIG, key="fig_lengths"
    )
    st.caption(
        "Each bar is the length of a digit capsule: the network's confidence that the digit is present. "
        f"Training pushes the true digit above m+ = {M_PLUS} and the others below m- = {M_MINUS}."
    )


@st.fragment
def poses(model: CapsNet, result: Inference, input_id: str, model_key: str) -> None:
    """The live pose view (decoded in the page), the same pose decoded on the server, and Figure 4.

    Only this fragment reruns when a slider is released. `input_id` names the (model, input,
    routing) the result belongs to, for the caches. The fragment times itself (server side, in
    session state) for the caption and the benchmark.
    """
    start = time.perf_counter()
    st.subheader(f"What the {PAPER.digit_dim} pose dimensions mean")
    controls = st.container(horizontal=True, vertical_alignment="bottom", key="pose_controls")
    digits = range(PAPER.num_classes)
    digit = state.widget(
        controls.selectbox, "Reconstruct as digit", digits, key=state.POSE_CLASS, default=result.predicted, width=200
    )
    for d in range(PAPER.digit_dim):  # the live decoder below starts from the same offsets as the sliders
        state.restore(state.POSE_DIM.format(d), 0.0)
    controls.button("Reset all to 0", key=state.POSE_RESET, on_click=reset_sliders)
    labels = _dimension_labels(model, result, f"{input_id}:{digit}", digit)
    st.caption(
        "Drag a slider: the decoder runs in this page, so the image follows it. Under each slider, what moving "
        "that dimension from -0.25 to +0.25 measurably does to this input's decoded digit: how much a pixel "
        "changes on average, in grey levels (0 to 255); the ink at -0.25 and at +0.25, as a share of this input's "
        "ink (100% = as much as the input has); and how far the ink's centre moves. Names like 'thickness' would "
        "be guesses."
    )
    live_decoder(model_key=model_key, model=model, pose=result.poses[digit], digit=digit, labels=labels)
    timing = _server_sliders(model, result, digit)
    _figure4(model, result, input_id, digit)
    elapsed = time.perf_counter() - start
    st.session_state[state.POSE_SECONDS] = elapsed
    timing.caption(f"This panel updated in {elapsed * 1000:.0f} ms on the server.")
    share.publish()  # the pose digit and offsets, when only this fragment reran


def _server_sliders(model: CapsNet, result: Inference, digit: int):
    """The pose decoded in Python, under sliders that always keep their values; returns the timing slot."""
    server = kept_expander("The same pose decoded on the server (Python sliders)", key=state.POSE_SERVER_OPEN)
    with server:
        side, main = st.columns([1, 3])
        image_slot = side.empty()
        with main:
            deltas = [
                _pose_slider(column, row * POSE_COLUMNS + col)
                for row in range(PAPER.digit_dim // POSE_COLUMNS)
                for col, column in enumerate(st.columns(POSE_COLUMNS))
            ]
        if server.open:  # decoded and drawn only when shown
            image = perturb.decode_pose(model, perturb.perturb(result.poses[digit], deltas), digit)
            image_slot.plotly_chart(
                for_screen(viz.image_figure(image, f"decoded as {digit}")), config=PLOT_CONFIG, key="fig_pose"
            )
        return side.empty()


def _pose_slider(column, d: int) -> float:
    return state.widget(
        column.slider,
        f"dim {d}",
        -perturb.PAPER_RANGE,
        perturb.PAPER_RANGE,
        step=SLIDER_STEP,
        key=state.POSE_DIM.format(d),
        default=0.0,
    )


def _figure4(model: CapsNet, result: Inference, input_id: str, digit: int) -> None:
    grid = kept_expander(
        "The paper's Figure 4 for this input: every dimension from -0.25 to 0.25", key=state.POSE_GRID_OPEN
    )
    if grid.open:
        with grid:
            png = _figure4_png(model, result, f"{input_id}:{digit}", digit)
            st.image(
                png, caption=f"digit {digit}: rows are dimensions 0-{PAPER.digit_dim - 1}, columns add -0.25 ... +0.25"
            )
            st.download_button(
                "Download PNG", png, file_name=f"capsviz-figure4-digit{digit}.png", key="pose_grid_download"
            )


def _dimension_labels(model: CapsNet, result: Inference, cache_key: str, digit: int) -> list[str]:
    """Per-dimension measured effects, from the decodes at -0.25, 0 and +0.25: once per input and digit."""
    cached = st.session_state.get(state.POSE_LABELS)
    if cached is None or cached[0] != cache_key:
        ends = np.array([-perturb.PAPER_RANGE, 0.0, perturb.PAPER_RANGE])
        grid = perturb.perturbation_grid(model, result.poses[digit], digit, ends)  # (16, 3, 28, 28)
        effects = perturb.dimension_effects(grid, float(result.image.sum()))
        st.session_state[state.POSE_LABELS] = cached = (cache_key, effects)
    return cached[1]


def _figure4_png(model: CapsNet, result: Inference, cache_key: str, digit: int) -> bytes:
    """The 16 x 11 decoder grid does not depend on the sliders: compute it once per input and digit."""
    cached = st.session_state.get(state.POSE_GRID)
    if cached is None or cached[0] != cache_key:
        values = perturb.grid_values()
        grid = perturb.perturbation_grid(model, result.poses[digit], digit, values)
        png = perturb.labelled_grid_png(grid, values, digit)
        st.session_state[state.POSE_GRID] = cached = (cache_key, png)
    return cached[1]
