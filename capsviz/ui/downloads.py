"""Data out: the current input's numbers and a Claims-lab sweep as CSV (columns: analysis/table_export.py, docs/app.md).

Each file is written only when its button is clicked (Streamlit calls the function then), and a
download does not rerun the page.
"""

from __future__ import annotations

import functools

import streamlit as st

from capsviz.analysis import table_export
from capsviz.analysis.lab import Reading, Transform, sweep
from capsviz.analysis.xray import RoutingXray
from capsviz.ui import state

CSV = "text/csv"


def input_downloads(ray: RoutingXray, predicted: int) -> None:
    """`ray`: the input's routing cut to the iterations in use (what the views show)."""
    r = ray.iterations
    row = st.container(horizontal=True, key="input_downloads")
    row.download_button(
        "Capsules (CSV)",
        functools.partial(table_export.capsules_csv, ray),
        file_name=f"capsviz-capsules-{predicted}-r{r}.csv",
        mime=CSV,
        key=state.DOWNLOAD_CAPSULES,
        on_click="ignore",
        icon=":material/download:",
        help="One row per digit capsule: its length, whether it is the prediction, and its 16-D pose.",
    )
    row.download_button(
        "Routing (CSV)",
        functools.partial(table_export.routing_csv, ray),
        file_name=f"capsviz-routing-{predicted}-r{r}.csv",
        mime=CSV,
        key=state.DOWNLOAD_ROUTING,
        on_click="ignore",
        icon=":material/download:",
        help=f"One row per iteration, primary capsule and digit ({r} x {ray.couplings.shape[1]:,} x "
        f"{ray.couplings.shape[2]} rows): the logit, coupling and agreement.",
    )


def _sweep_csv(points: list[Transform], along: Reading, swept: str, routing_iters: int) -> str:
    return table_export.sweep_csv(
        points, along.capsnet, along.poses, along.cnn, swept=swept, routing_iters=routing_iters
    )


def sweep_download(current: Transform, swept: str, along: Reading, routing_iters: int) -> None:
    """The sweep of `swept` from the `current` transform (the points `along` read), every digit."""
    st.download_button(
        "Download the sweep (CSV)",
        functools.partial(_sweep_csv, sweep(current, swept), along, swept, routing_iters),
        file_name=f"capsviz-sweep-{swept}.csv",
        mime=CSV,
        key=state.DOWNLOAD_SWEEP,
        on_click="ignore",
        icon=":material/download:",
        help="One row per sweep point and digit: the seven transform settings, CapsNet's length and 16-D pose, "
        "the CNN's probability.",
    )
