"""The guided path: a short introduction, then the network as a row of stages to click through,
each showing what it holds for the current input and one sentence of what it does."""

from __future__ import annotations

import streamlit as st
import torch

from capsviz.analysis import stages
from capsviz.analysis.inference import Inference
from capsviz.figures import viz
from capsviz.model import CapsNet
from capsviz.ui import state
from capsviz.ui.widgets import PLOT_CONFIG

INTRO = (
    "A capsule network reads a digit in four steps. Click a stage to see what it holds for **your** input; "
    "the sections below go deeper into routing and poses."
)
SHOWN_MAPS = 64  # Conv1 maps drawn (of 256)


def guided_path(model: CapsNet, x: torch.Tensor, result: Inference) -> None:
    st.subheader("The network, stage by stage")
    st.markdown(INTRO)
    names = [f"{name} · {holds}" for name, holds, _ in stages.STAGES]
    chosen = state.widget(
        st.segmented_control,
        "Stage",
        names,
        required=True,
        key=state.GUIDE_STAGE,
        default=names[0],
        fits=names.__contains__,
        label_visibility="collapsed",
    )
    index = names.index(chosen) if chosen in names else 0
    name, holds, does = stages.STAGES[index]
    st.markdown(f"**{name}** ({holds}). {does}")
    if name == "Input":
        figure = viz.image_figure(result.image, "the input the model sees")
    elif name == "Conv1":
        maps = stages.conv1_maps(model, x)  # (256, 20, 20)
        figure = viz.tiles_figure(
            maps[:SHOWN_MAPS], f"Conv1: the first {SHOWN_MAPS} of {len(maps)} feature maps", columns=16
        )
    elif name == "PrimaryCaps":
        turns = stages.turn_from_blank(model, x, model.config.primary_grid)  # (32, 6, 6) degrees
        figure = viz.tiles_figure(
            turns,
            "Primary capsules: turn from their blank-input direction",
            scale=stages.TURN_SCALE,
            unit="degrees",
        )
        st.caption(
            f"{stages.length_note(result.activations)} One 6×6 tile per capsule type: how far each capsule's "
            "direction turns from the one it has on an all-black input, where it sees no stroke (0°, dark), up to "
            f"the opposite direction ({stages.TURN_SCALE[1]:.0f}°), on one fixed scale for every input."
        )
    elif name == "DigitCaps":
        figure = viz.poses_figure(result.poses.numpy(), result.predicted)
    else:
        figure = viz.image_figure(result.reconstruction, f"decoded from capsule {result.predicted}")
    st.plotly_chart(figure, config=PLOT_CONFIG, key="fig_guide")
