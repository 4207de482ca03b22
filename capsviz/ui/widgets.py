"""Small widgets the views share."""

from __future__ import annotations

import streamlit as st

from capsviz.figures.projector import projected
from capsviz.ui import state

# A modebar with two buttons: a PNG of the chart, and a way back from an accidental drag-zoom (so is a double click).
PLOT_CONFIG = {
    "displaylogo": False,
    "modeBarButtons": [["toImage", "resetScale2d"]],
    "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "capsviz-chart"},
    "doubleClick": "reset",
    "scrollZoom": False,
}


PRESENT_CHART_FONT = 16  # px: the smallest chart text in presentation mode (a projector needs 14 at least)
PRESENT_TEXT_SCALE = 1.6  # the page's own drawings (the coupling tiles) scale their text by this when presenting


def presenting() -> bool:
    """Whether the page is in presentation mode (capsviz.ui.present)."""
    return bool(state.value(state.PRESENT, False))


def for_screen(figure):
    """The figure as built, or a copy with projector-sized text while the page is in presentation mode."""
    return projected(figure, minimum=PRESENT_CHART_FONT) if presenting() else figure


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
