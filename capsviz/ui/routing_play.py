"""Routing you can play: the iteration slider with a Play button, and uniform couplings beside routed ones.

Play steps the routing views' iteration from 1 to the last, one step every STEP_SECONDS. The
page keeps time: a small components v2 element (no visible body) waits after each drawing and
then reports which (play, iteration) it has shown; the server advances only when that report
names the current step, so a slow run never skips or repeats one, and Pause, a new input or a
moved slider simply stop answering it.
"""

from __future__ import annotations

import streamlit as st

from capsviz.analysis import compare, xray
from capsviz.figures import viz, viz_routing
from capsviz.ui import state
from capsviz.ui.widgets import PLOT_CONFIG, for_screen

STEP_SECONDS = 1.2

JS = r"""
export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const box = parentElement.ticker = parentElement.ticker || { key: null, timer: null };
  const wanted = data && data.play ? `${data.play}:${data.step}` : null;
  if (wanted !== box.key) {
    clearTimeout(box.timer);
    box.key = wanted;
    if (wanted) box.timer = setTimeout(() => setStateValue('tick', [data.play, data.step]), data.delay_ms);
  }
  return () => { clearTimeout(box.timer); box.key = null; };
}
"""

_ticker = st.components.v2.component("capsviz.routing_ticker", js=JS)


def _tick(value) -> tuple[int, int] | None:
    """The (play, iteration) the page reported, from the element's state in session state, or None."""
    tick = value.get("tick") if isinstance(value, dict) else None
    if isinstance(tick, list) and len(tick) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in tick):
        return tick[0], tick[1]
    return None


def _play() -> None:
    plays = st.session_state.get(state.ROUTING_PLAYS, 0) + 1
    st.session_state[state.ROUTING_PLAYS] = plays
    st.session_state[state.ROUTING_PLAYING] = plays
    state.put(state.ROUTING_ITERATION, 1)


def _pause() -> None:
    st.session_state[state.ROUTING_PLAYING] = None


def _advance(last: int) -> None:
    """One step of a play in progress, when the page reports that it has shown the current one."""
    play = st.session_state.get(state.ROUTING_PLAYING)
    current = state.value(state.ROUTING_ITERATION)
    if play is None or _tick(st.session_state.get(state.ROUTING_TICKER)) != (play, current):
        return
    if current < last:
        state.put(state.ROUTING_ITERATION, current + 1)
    if current + 1 >= last:
        st.session_state[state.ROUTING_PLAYING] = None  # the last iteration is on screen: the play is over


ITERATION_HELP = (
    "Steps through the {count} routing iterations the prediction ran (set by 'Routing iterations at inference'): "
    "the views show the couplings and votes after the one chosen here; the prediction does not change."
)


def iteration_slider(last: int) -> int:
    """The routing views' iteration (1..last), with Play beside it."""
    if last == 1:  # nothing to step through: say so where the slider would be
        st.session_state[state.ROUTING_PLAYING] = None
        st.caption("Iteration shown: 1, the only one the prediction ran: every coupling is 1/10.")
        return 1
    _advance(last)
    fits = range(1, last + 1).__contains__
    iteration = state.widget(
        st.slider, "Iteration shown", 1, last, key=state.ROUTING_ITERATION, default=last, fits=fits,
        help=ITERATION_HELP.format(count=last),
    )  # fmt: skip
    playing = st.session_state.get(state.ROUTING_PLAYING)
    if playing is None:
        st.button("Play", key=state.ROUTING_PLAY, on_click=_play, icon=":material/play_arrow:",
                  help=f"Step the views through iterations 1 to {last}, one every {STEP_SECONDS:g} s.")  # fmt: skip
    else:
        st.button("Pause", key=state.ROUTING_PLAY, on_click=_pause, icon=":material/pause:")
    step = {"play": playing, "step": iteration, "delay_ms": round(STEP_SECONDS * 1000)} if playing else None
    _ticker(key=state.ROUTING_TICKER, data=step, on_tick_change=lambda: None, width="content", height="content")
    return iteration


def fixed_counts(model_iters: int, available: int) -> int:
    """In place of the slider, for the comparison's two fixed counts: names them, stops any play; the last."""
    st.session_state[state.ROUTING_PLAYING] = None
    uniform, routed = compare.compared_counts(model_iters, available)
    st.caption(f"Iterations shown: {uniform} and {routed}, side by side.")
    return routed


def compare_view(full: xray.RoutingXray, model_iters: int, centres) -> None:
    """The same input with uniform couplings (1 iteration) and with the model's count, side by side."""
    uniform, routed = compare.compared_counts(model_iters, full.iterations)
    st.markdown(f"**Measured:** {compare.comparison_text(full.lengths, routed=routed)}")
    named = "the model's count" if routed == model_iters else "the paper's count: this model routes once"
    sides = (
        (uniform, "Uniform couplings: 1 iteration, every c_ij = 1/10"),
        (routed, f"Routed: {routed} iterations ({named})"),
    )
    for column, (count, title) in zip(st.columns(2), sides, strict=True):
        ray = full.upto(count)
        lengths = ray.lengths[-1]  # (J,)
        winner = int(lengths.argmax())
        column.markdown(f"**{title}**  \nreads **{winner}**, capsule length {lengths[winner]:.3f}")
        column.plotly_chart(
            for_screen(viz.lengths_figure(lengths, winner)), config=PLOT_CONFIG, key=f"fig_compare_lengths_{count}"
        )
        split = xray.position_split(ray.couplings[-1], ray.grid)  # (G, G, J)
        column.plotly_chart(
            for_screen(viz_routing.split_overlay_figure(ray.image, split, centres, iteration=count)),
            config=PLOT_CONFIG,
            key=f"fig_compare_split_{count}",
        )
    st.caption(
        "Left, every primary capsule sends its vote to every digit in equal parts; right, routing by agreement "
        "has moved each capsule's share towards the digits its vote agrees with. Same input, same weights."
    )
