"""The capsviz page, in order: sidebar, then the Explore and Train tabs."""

from __future__ import annotations

import streamlit as st

from capsviz.inference import from_xray
from capsviz.ui.inputs import model_input
from capsviz.ui.routing import full_xray, routing
from capsviz.ui.sidebar import sidebar
from capsviz.ui.training import training_tab
from capsviz.ui.views import lengths_chart, poses, prediction, sync_to_input


def main() -> None:
    st.set_page_config(page_title="capsviz", page_icon="🧠", layout="wide")
    st.title("capsviz: Capsule Networks, explored")
    settings = sidebar()
    explore, train = st.tabs(["Explore", "Train"])
    with explore:
        explore_tab(settings)
    with train:
        training_tab()


def explore_tab(settings) -> None:
    left, middle, right = st.columns([1.1, 1, 1.3])
    with left:
        source = model_input(settings.loaded, settings.routing_iters)
    if source.x is None:
        (middle.error if source.error else middle.info)(source.message)
        return
    ray = full_xray(settings.loaded, source)  # every routing iteration, once per (model, input)
    result = from_xray(settings.loaded.model, ray.upto(settings.routing_iters))
    sync_to_input(source, result)
    with middle:
        prediction(result, source.label)
    with right:
        lengths_chart(result)
    st.divider()
    routing(settings.loaded, ray, result, settings.routing_iters)
    st.divider()
    poses(settings.loaded.model, result, f"{settings.loaded.key}:{source.key}:{settings.routing_iters}")
