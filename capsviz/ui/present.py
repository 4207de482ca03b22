"""Presentation mode: the lesson one section per screen, for a projector.

A toggle at the top of the sidebar turns it on. Back and Next (or a clicker: Page Down and
Page Up, or the arrow keys) walk input -> capsule lengths -> routing -> pose sliders -> claims.
Each section is the normal page's own view, with the same widgets and kept values
(capsviz.ui.state), so there is one state: leave presentation mode and the page shows what the
screens showed. Text
is larger (the page's root font; chart text at least `widgets.PRESENT_CHART_FONT` px), and
only the section on screen runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.ui import canvas, inputs, state
from capsviz.ui.downloads import input_downloads
from capsviz.ui.inputs import ModelInput, model_input
from capsviz.ui.lab import lab_on_input, remember_input
from capsviz.ui.lesson import examples_popover, first_screen, start_panel
from capsviz.ui.routing import routing
from capsviz.ui.views import each_digit, lengths_chart, poses, prediction

INPUT, LENGTHS, ROUTING, POSES, CLAIMS = "Input", "Capsule lengths", "Routing", "Pose sliders", "Claims"
SECTIONS = (INPUT, LENGTHS, ROUTING, POSES, CLAIMS)
ROOT_FONT_PX = 20  # the page's rem: Streamlit's text, captions (0.875rem = 17.5 px) and the pose sliders scale with it
CSS = f"""<style>
html {{ font-size: {ROOT_FONT_PX}px !important; }}
.st-key-present_bar {{ padding-bottom: 0.4rem; border-bottom: 1px solid var(--st-border-color, #d5dae5); }}
.st-key-present_where {{ display: none; }}
@media (max-width: 640px) {{  /* a phone: "3 / 5 · Routing" instead of the five names */
  .st-key-present_section {{ display: none; }}
  .st-key-present_where {{ display: block; }}
}}
</style>"""
KEYS_JS = r"""
// Text fields, sliders and radio groups keep their own keys; Page Down / Up pass a focused button or toggle.
const OWN_KEYS = 'textarea, select, [contenteditable="true"], [role="slider"], [role="spinbutton"], '
  + 'input:not([type="checkbox"]):not([type="button"]):not([type="radio"])';
const OWN_ARROWS = OWN_KEYS + ', input[type="radio"], [role="radiogroup"], [role="tablist"], [role="listbox"]';
const STEPS = { PageDown: 1, ArrowRight: 1, PageUp: -1, ArrowLeft: -1 };

export default function (component) {
  const { data, setTriggerValue } = component;
  const clicker = window.__capsvizClicker = window.__capsvizClicker || { send: null };
  clicker.send = step => setTriggerValue('step', step);
  if (!clicker.listening) {  // one listener per page, however often the element is drawn
    clicker.listening = true;
    window.addEventListener('keydown', event => {
      const step = STEPS[event.key], target = event.composedPath()[0];
      if (!step || !clicker.send || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
      const own = event.key.startsWith('Arrow') ? OWN_ARROWS : OWN_KEYS;
      if (target instanceof Element && target.closest(own)) return;
      event.preventDefault();
      clicker.send(step);
    });
  }
  if (data && data.section !== clicker.section) {  // a new section starts at its top
    clicker.section = data.section;
    document.querySelector('[data-testid="stMain"]')?.scrollTo(0, 0);
    window.scrollTo(0, 0);
  }
  const send = clicker.send;
  return () => { if (clicker.send === send) clicker.send = null; };
}
"""

_keys = st.components.v2.component("capsviz.present_keys", js=KEYS_JS)


@dataclass(frozen=True)
class Page:
    """What the presentation borrows from the normal page (capsviz.ui.app), so both run the same code."""

    iterations: Callable  # (loaded) -> the routing-iterations slider's value, drawing it
    read: Callable  # (settings, source, iters) -> (ray, result, view) for this input, synced to it


def toggle() -> bool:
    return state.widget(
        st.sidebar.toggle,
        "Presentation mode",
        key=state.PRESENT,
        default=False,
        help="One section per screen, larger text, for a projector: Back and Next, or a clicker (Page Down / Up, "
        "arrow keys). The same input and settings as the normal page.",
    )


def _step(by: int) -> None:
    index = SECTIONS.index(state.value(state.PRESENT_SECTION, INPUT))
    state.put(state.PRESENT_SECTION, SECTIONS[min(max(index + by, 0), len(SECTIONS) - 1)])


def clicked(value) -> int | None:
    """The step a clicker key reported (+1 or -1), from the element's state in session state, or None."""
    step = value.get("step") if isinstance(value, dict) else None
    return step if step in (1, -1) and not isinstance(step, bool) else None


def _clicked() -> None:
    step = clicked(st.session_state.get(state.PRESENT_KEYS))
    if step is not None:
        _step(step)


def _leave() -> None:
    state.put(state.PRESENT, False)


def navigation() -> str:
    """Back, the five sections (click one to jump), Next, Leave; returns the section on screen."""
    index = SECTIONS.index(state.value(state.PRESENT_SECTION, INPUT))
    bar = st.container(horizontal=True, vertical_alignment="center", key="present_bar")
    bar.button("Back", key=state.PRESENT_BACK, on_click=_step, args=(-1,), disabled=index == 0,
               icon=":material/arrow_back:")  # fmt: skip
    section = state.widget(bar.segmented_control, "Section", SECTIONS, key=state.PRESENT_SECTION, default=INPUT,
                           fits=SECTIONS.__contains__, required=True, label_visibility="collapsed")  # fmt: skip
    index = SECTIONS.index(section)
    bar.container(key="present_where", width="content").markdown(f"{index + 1} / {len(SECTIONS)} · **{section}**")
    bar.button("Next", key=state.PRESENT_NEXT, on_click=_step, args=(1,), disabled=index == len(SECTIONS) - 1,
               icon=":material/arrow_forward:")  # fmt: skip
    bar.button("Leave", key=state.PRESENT_LEAVE, on_click=_leave, icon=":material/close:", type="tertiary")
    with bar:
        _keys(key=state.PRESENT_KEYS, data={"section": section}, on_step_change=_clicked, width="content",
              height="content")  # fmt: skip
    return section


def _iterations(loaded) -> int:
    """The routing iterations in use, without drawing their slider (it lives on the routing screen)."""
    iters = state.value(state.ROUTING_ITERS, loaded.model.config.routing_iters)
    return min(max(int(iters), 1), MAX_ROUTING_ITERS)


def show(settings, page: Page) -> None:
    """Draw the navigation and the section on screen."""
    st.html(CSS)
    section = navigation()
    if section != INPUT:
        canvas.hidden()  # the canvas remounts with the last drawing
        inputs.hidden()  # and the upload is kept
    if section == CLAIMS:
        lab_on_input(settings.loaded, settings.device)
        return
    loaded = settings.loaded
    iters = page.iterations(loaded) if section == ROUTING else _iterations(loaded)
    right = None
    if section == INPUT:
        left, right = st.columns([1.1, 1])
        with left:
            source = model_input(loaded, iters)
        remember_input(source)
        with right:  # beside the canvas, as on the normal page (under it on a phone): the canvas stays at the top
            if source.x is None:
                (st.error if source.error else st.info)(source.message)
            if first_screen():
                start_panel()
            else:
                examples_popover()
    else:
        source = st.session_state.get(state.LAB_INPUT) or ModelInput(None, message="")
    if source.x is None and section != INPUT:
        st.info(f"Nothing to show yet: draw, pick or upload a digit on the {INPUT} screen first.")
    if source.x is not None:
        ray, result, view = page.read(settings, source, iters)
        _section(section, settings, ray, result, view, iters, source, right)


def _section(section: str, settings, ray, result, view: str, iters: int, source: ModelInput, right) -> None:
    loaded = settings.loaded
    if section == INPUT:
        with right:
            prediction(result, source.label)
    elif section == LENGTHS:
        left, right = st.columns([1.4, 1])
        with left:
            lengths_chart(result)
            input_downloads(ray.upto(iters), result.predicted)
        with right:
            prediction(result, source.label)
        each_digit(loaded.model, result)
    elif section == ROUTING:
        routing(loaded, ray, result, iters)
    elif section == POSES:
        poses(loaded.model, result, view, loaded.key)
