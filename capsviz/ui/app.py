"""The capsviz page, in order: sidebar, then the Explore, Two digits, Claims lab and Train tabs (only the open one
runs), or in presentation mode one section of the lesson per screen (capsviz.ui.present)."""

from __future__ import annotations

# Imported here, once, before any session's script goes on: Plotly looks pandas up in sys.modules without importing
# it, and found it half-imported while another session's thread imported it (many browsers drawing at once on a
# fresh server: "partially initialized module 'pandas' has no attribute 'Series'").
import pandas  # noqa: F401
import streamlit as st

from capsviz.analysis.inference import from_xray
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.ui import canvas, inputs, present, share, state, two_digit_input, widget_guard
from capsviz.ui.downloads import input_downloads
from capsviz.ui.guide import guided_path
from capsviz.ui.inputs import ModelInput, model_input
from capsviz.ui.lab import lab_tab, remember_input
from capsviz.ui.lesson import examples_popover, first_screen, start_panel
from capsviz.ui.resources import LoadedModel, torch_threads
from capsviz.ui.routing import full_xray, routing
from capsviz.ui.sidebar import sidebar
from capsviz.ui.training import training_tab
from capsviz.ui.two_digits import two_digits_tab
from capsviz.ui.views import each_digit, lengths_chart, poses, prediction, sync_to_input, view_id

# Phones (Streamlit stacks columns below 640 px): a smaller title keeps the prediction above the fold. A button's
# label wraps onto a second line where Streamlit would cut it to an ellipsis ("Download the tr…" in a narrow column).
PAGE_CSS = """<style>
.st-key-narrow_hint { display: none; }
:is(.stButton, .stDownloadButton) button :is([data-testid="stMarkdownContainer"], p) {
  white-space: normal; overflow: visible; text-overflow: clip;
}
@media (max-width: 640px) {
  h1 { font-size: 1.7rem !important; padding-top: 0 !important; }
  .st-key-narrow_hint { display: block; }  /* what a phone cuts off, said where it is cut */
}
</style>"""
TABS = tuple(state.TAB_NAMES.values())
widget_guard.install()  # once per server process, before a later rerun reads what a page reported

LINK_CAPTION = (
    ":material/link: The address bar holds this view: the open tab, the input, model and routing iterations, the "
    "routing view, iteration, parent digit and inspected capsule, the guided path's stage, the pose digit and its "
    "offsets, the Two digits tab's picture, routing iterations and extra capsule, and the Claims lab's transform, "
    "sweep and digit. Copy it to share it or to come back to it. Each chart's camera button (the coupling tiles: "
    "Save PNG) saves it as a PNG."
)


def main() -> None:
    st.set_page_config(page_title="capsviz", page_icon="🧠", layout="wide")
    st.html(PAGE_CSS)
    torch_threads()  # once per server process, before any tab computes
    state.run_started()
    presenting = present.toggle()  # at the top of the sidebar
    if not presenting:
        st.title("capsviz: Capsule Networks, explored")
    share.restore()
    settings = sidebar()
    st.sidebar.caption(LINK_CAPTION)
    share.problems()
    if presenting:
        present.show(settings, present.Page(iterations=routing_iterations, read=reading))
    else:
        tabs(settings)
    share.publish()
    state.run_finished()


def tabs(settings) -> None:
    explore, two, lab, train = st.tabs(list(TABS), key=state.TABS, on_change="rerun")
    if explore.open:
        with explore:
            explore_tab(settings)
    else:
        canvas.hidden()  # the canvas remounts with the last drawing
        inputs.hidden()  # and the upload is kept
    if two.open:
        with two:
            two_digits_tab(settings.device)
    else:
        two_digit_input.hidden()  # the two-pen canvas too
    if lab.open:
        with lab:
            lab_tab(settings.loaded, settings.device)
    if train.open:
        with train:
            training_tab()


def routing_iterations(loaded: LoadedModel) -> int:
    return state.widget(
        st.slider,
        "Routing iterations at inference",
        1,
        MAX_ROUTING_ITERS,
        key=state.ROUTING_ITERS,
        default=model_iterations(loaded),  # the model's own count, unless a link or the user set one
        on_change=_show_last_iteration,
        help="How many routing iterations the model runs for every prediction on this page (the paper uses 3); "
        "changing it needs no retraining. The routing views' 'Iteration shown' then steps through these iterations "
        "without changing the prediction.",
    )


def model_iterations(loaded: LoadedModel) -> int:
    return min(max(loaded.model.config.routing_iters, 1), MAX_ROUTING_ITERS)


def _show_last_iteration() -> None:
    """A new routing count: the routing views show its last iteration."""
    state.put(state.ROUTING_ITERATION, st.session_state[state.ROUTING_ITERS])


def reading(settings, source: ModelInput, iters: int):
    """(ray, result, view) for this input: its X-ray (every iteration, once per model and input), the
    Inference at `iters`, and the per-input controls synced to it."""
    ray = full_xray(settings.loaded, source)
    result = from_xray(settings.loaded.model, ray.upto(iters))
    view = view_id(settings.loaded.key, source, iters)
    sync_to_input(view, result)
    share.apply_pending()
    return ray, result, view


def explore_tab(settings) -> None:
    left, middle, right = st.columns([1.1, 1, 1.3])
    searching = inputs.will_search(settings.loaded)
    verdict = middle.empty() if searching else middle  # the last verdict goes at once: a search takes a while
    below = st.container(key="below_inputs")  # routing iterations, on the page where phones see them
    with below:
        iters = routing_iterations(settings.loaded)
    with left:
        source = model_input(settings.loaded, iters)
    remember_input(source)  # the Claims lab transforms this input
    middle = verdict.container() if searching else middle
    if source.x is None:
        with middle:
            (st.error if source.error else st.info)(source.message)
            if first_screen():  # what a capsule is, and examples to start from
                start_panel()
            else:
                examples_popover()
        return
    ray, result, view = reading(settings, source, iters)
    with middle:
        prediction(result, source.label, two_digit_input.read_explored)
    with right:
        examples_popover()  # beside the prediction, so nothing moves under a drawing hand
        lengths_chart(result)
        input_downloads(ray.upto(iters), result.predicted)
    with below:
        each_digit(settings.loaded.model, result)
    st.divider()
    guided_path(settings.loaded.model, source.x, result)
    st.divider()
    routing(settings.loaded, ray, result, iters)
    st.divider()
    poses(settings.loaded.model, result, view, settings.loaded.key)
