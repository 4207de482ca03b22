"""Small widgets the views share."""

from __future__ import annotations

import streamlit as st

# A modebar with two buttons: a PNG of the chart, and a way back from an accidental drag-zoom (so is a double click).
PLOT_CONFIG = {
    "displaylogo": False,
    "modeBarButtons": [["toImage", "resetScale2d"]],
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "capsviz-chart"},
    "doubleClick": "reset",
    "scrollZoom": False,
}


def _remember(key: str) -> None:
    st.session_state[f"{key}:kept"] = bool(st.session_state.get(key))


def kept_expander(label: str, *, key: str):
    """An expander that stays open across runs where it is not shown (a cleared canvas, another input).

    Streamlit forgets a widget's state when a run does not draw it; this one keeps its own copy.
    Its `.open` tells whether to compute the contents at all.
    """
    expander = st.expander(
        label, expanded=st.session_state.get(f"{key}:kept", False), key=key, on_change=_remember, args=(key,)
    )
    st.session_state[f"{key}:kept"] = bool(expander.open)
    return expander
