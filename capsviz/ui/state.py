"""Session-state keys, in one place (every widget has a key, and tests find widgets by it), and the controls
whose values outlive the runs that do not draw them.

Streamlit forgets a widget's value at the end of a run that does not draw it (a closed lazy tab, a hidden
option), and a widget drawn again comes back at its default, in the browser too. So each control here has a
second, persistent copy of its value: `widget` draws it and records the value; when the widget was not drawn in
the last finished run, it first sets the kept value, which Streamlit then sends to the browser with the widget,
and sends it once more in the next run (the browser's next report can leave before it mounts the widget).
`value` reads a control whether or not it is drawn; `put` sets one from code, and that value stands against a
report that crossed it on the way (sent by the browser before it had the new value). A value the widget does not
offer (a crafted page can send any) is never kept or read: the control keeps its last value.

    state.run_started()                   # top of the page's script, before any widget
    iters = state.widget(st.slider, "Routing iterations", 1, 5, key=state.ROUTING_ITERS, default=3)
    state.value(state.ROUTING_ITERS)      # from another tab: the same 3, or what the user chose
    state.run_finished()                  # end of the page's script
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Number
from typing import Any

import streamlit as st

CANVAS = "canvas"
CANVAS_MEMORY = "canvas_memory"  # the last drawing, so Draw -> MNIST -> Draw keeps it
CANVAS_UNDO = "canvas_undo"
CANVAS_CLEAR = "canvas_clear"
STROKE_WIDTH = "stroke_width"
INPUT_SOURCE = "input_source"
SAMPLE_MODE = "sample_mode"
SAMPLE_DIGIT = "sample_digit"
SAMPLE_INDEX = "sample_index"
SAMPLE_NEXT = "sample_next"
SAMPLE_PICKED_FOR = "sample_picked_for"  # (mode, digit, model) the current sample was picked for
UPLOAD = "upload"
UPLOAD_DECODED = "upload_decoded"  # (upload identity, capsviz.ui.inputs.Decoded): an upload is decoded once
UPLOAD_CROP_X = "upload_crop_x"  # (left, right) in % of the picture's width
UPLOAD_CROP_Y = "upload_crop_y"  # (top, bottom) in % of its height
UPLOAD_THRESHOLD = "upload_threshold"  # ink fainter than this % of the strongest is background
UPLOAD_RESET = "upload_reset"
UPLOAD_AWAY = "upload_away"  # the Explore tab was closed: its uploader comes back empty, the upload is kept
GALLERY_SHOWN = "gallery_shown"
GALLERY_OPEN = "gallery_open"
GALLERY_PICK = "gallery_pick_"  # + test image index
GALLERY_MORE = "gallery_more"
GALLERY_PAGE = "gallery_page"
GALLERY_CHECK = "gallery_check"
GALLERY_MORE_CHECK = "gallery_more_check"

CHECKPOINT_CHOICE = "checkpoint_choice"
VIEWER = "viewer"  # a token for this session in the server-wide list of runs shown (say if one vanishes)
CHECKPOINT_UPLOAD = "checkpoint_upload"
ROUTING_ITERS = "routing_iters"
DEVICE = "device"

ROUTING_ITERATION = "routing_iteration"
ROUTING_DIGIT = "routing_digit"
ROUTING_VIEW = "routing_view"
ROUTING_XRAY = "routing_xray"  # (model, input) -> capsviz.analysis.xray.RoutingXray of every iteration, computed once
ROUTING_TILES = "coupling_tiles"  # the coupling tiles element (capsviz.ui.tiles): a click picks the inspected capsule
ROUTING_OVERLAY = "fig_overlay"  # the split overlay: a click picks that position (same capsule type)
ROUTING_EXPORT = "routing_export"
INSPECT_CAPSULE = "inspect_capsule"  # the primary capsule index shown in the inspector, or None
POSE_CLASS = "pose_class"
READ_AS_TWO = "read_as_two"  # the button under a "Two digits?" verdict: the Two digits tab on this input
POSE_DIM = "pose_dim_{}"  # .format(d) for d in 0..15
POSE_RESET = "pose_reset"
POSE_NONCE = "pose_nonce"  # bumped by Reset, so the live sliders reset even when the offsets were already 0
POSE_SERVER_OPEN = "pose_server_open"
POSE_LABELS = "pose_labels"  # (input, digit) -> the measured per-dimension labels
LIVE_DECODER = "live_decoder"
LIVE_KEPT = "live_kept"  # the last offsets the page reported, already applied
LIVE_SENT = "live_sent"  # the model whose decoder weights this page has been sent
VIEW_ID = "view_id"  # which (model, input, routing iterations) the per-input widgets belong to
POSE_GRID = "pose_grid"  # (input, model, digit) -> the Figure 4 PNG, computed once
POSE_GRID_OPEN = "pose_grid_open"
ROUTING_MATRIX_OPEN = "routing_matrix_open"
CARD_CURVE_OPEN = "card_curve_open"
POSE_SECONDS = "pose_seconds"  # how long the pose fragment's last run took, server side

TRAIN_EPOCHS = "train_epochs"
TRAIN_BATCH = "train_batch"
TRAIN_LR = "train_lr"
TRAIN_ITERS = "train_iters"
TRAIN_DEVICE = "train_device"
TRAIN_LIMIT = "train_limit"
TRAIN_EVAL_LIMIT = "train_eval_limit"
TRAIN_PRESET = "train_preset"
TRAIN_USE_ANYWAY = "train_use_anyway"
TRAIN_START = "train_start"
TRAIN_CANCEL = "train_cancel"
TRAIN_JOB = "train_job"
TRAIN_USE = "train_use"
TRAIN_DOWNLOAD = "train_download"

SHARE_RESTORED = "share_restored"  # the link's state was applied, once per session
SHARE_PENDING = "share_pending"  # the link's per-input values, applied after the first input resets them
SHARE_PROBLEMS = "share_problems"  # the link's parameters that could not be read, shown until dismissed
SHARE_DISMISS = "share_dismiss"
SHARE_IMAGE = "share_image"  # a (1, 28, 28) input from the link, until discarded
SHARE_DISCARD = "share_discard"
GUIDE_STAGE = "guide_stage"

TABS = "tabs"  # the open tab's label (lazy tabs: only the open tab's code runs)
TAB_NAMES = {
    "explore": "Explore",
    "two": "Two digits",
    "lab": "Claims lab",
    "train": "Train",
}  # a link's name -> the tab's label
LAB_INPUT = "lab_input"  # the current input (a ModelInput): the Explore tab's, or a link's; the lab transforms it
LAB_PARAM = "lab_{}"  # .format(name) for each capsviz.analysis.lab.Transform field: the lab's sliders
LAB_RESET = "lab_reset"
LAB_SWEEP_OF = "lab_sweep_of"
LAB_DIGIT = "lab_digit"
LAB_DIGIT_FOR = "lab_digit_for"  # the input the digit chooser was last set for
LAB_SWEEP = "lab_sweep"  # (what it was computed for, capsviz.analysis.lab.Reading): the sweep, once per setting
LAB_SECONDS = "lab_seconds"  # how long the lab fragment's last run took, server side

# The Two digits tab (capsviz.ui.two_digits): two overlapping digits through the shipped two-digit models.
TWO_SOURCE = "two_source"  # a MultiMNIST test pair, or the Explore tab's input on the two-digit canvas
TWO_PAIR = "two_pair"  # the test pair's index
TWO_RANDOM = "two_random"
TWO_ITERS = "two_iters"  # the two-digit CapsNet's routing iterations
TWO_CLASS = "two_class_{}"  # .format(0 or 1): the class of each test digit picked by class
TWO_PICKED = "two_picked"  # (first, second): the MNIST test digits picked for those classes
TWO_NEW = "two_new"
TWO_PEN = "two_pen"  # the two-pen canvas's pen: the first digit's (red) or the second's (blue)
TWO_EXTRA = "two_extra"  # a third digit capsule to reconstruct from, or None
TWO_SHIFT = "two_shift_{}"  # .format(k): the first digit across, down, the second across, down (px)

# A lesson: the first screen's examples (capsviz.ui.lesson), presentation mode (capsviz.ui.present), playing the
# routing iterations (capsviz.ui.routing_play) and the CSV downloads (capsviz.ui.downloads).
LESSON_EXAMPLE = "lesson_example_{}"  # .format(name) for each capsviz.examples.EXAMPLES entry: its button
LESSON_TWO = "lesson_two"  # the button that opens the Two digits tab on a test pair
LESSON_SHOWN = "lesson_shown"  # the example last loaded into the canvas
LESSON_LOADS = "lesson_loads"  # examples loaded so far: each gives the Examples popover a new key, so it folds
PRESENT = "present"  # the presentation-mode toggle
PRESENT_SECTION = "present_section"  # the section on screen, one of capsviz.ui.present.SECTIONS
PRESENT_BACK = "present_back"
PRESENT_NEXT = "present_next"
PRESENT_LEAVE = "present_leave"
PRESENT_KEYS = "present_keys"  # the clicker element: Page Down / Page Up and the arrow keys step the sections
ROUTING_PLAY = "routing_play"  # the Play / Pause button
ROUTING_PLAYING = "routing_playing"  # the number of the play in progress, or None
ROUTING_PLAYS = "routing_plays"  # how many plays this session started: each gets its own number
ROUTING_TICKER = "routing_ticker"  # the element that asks for the next step after a pause
DOWNLOAD_CAPSULES = "download_capsules"
DOWNLOAD_ROUTING = "download_routing"
DOWNLOAD_SWEEP = "download_sweep"

KEPT = "kept_values"  # {widget key: its value}, kept across runs that do not draw the widget
DRAWN = "kept_drawn"  # {widget key: the full run that last drew it, itself or in one of its fragments' reruns}
STARTED = "run_started"  # the number of the latest full run of the page (fragment reruns belong to it)
FINISHED = "run_finished"  # the number of the latest full run that finished (one stopped for a rerun has not)
PUTS = "kept_puts"  # {widget key: (the full run that set it from code, its value before, the value set)}
FRESH = "kept_fresh"  # {widget key: the full run that drew it with its value set from code}
OFFERS = "kept_offers"  # {widget key: (value -> bool, ...): what its widget accepts}, from its last drawing
CHOICES = ("radio", "selectbox", "segmented_control")  # widgets whose value is one of their options
SWITCHES = ("checkbox", "toggle")


def _kept() -> dict:
    return st.session_state.setdefault(KEPT, {})


def _live(key: str) -> bool:
    """Drawn since the last finished full run began: Streamlit and the browser still hold its value (a finished
    run drops the widgets it did not draw; a run stopped for a rerun drops nothing)."""
    drawn = st.session_state.setdefault(DRAWN, {}).get(key)
    return drawn is not None and drawn >= st.session_state.get(FINISHED, 0)


def _offered(key: str, value: Any) -> bool:
    """Whether `key`'s widget, as last drawn, offers `value` (and its caller's `fits` takes it)."""
    offers = st.session_state.get(OFFERS, {}).get(key, ())
    try:
        return all(fits(value) for fits in offers)
    except Exception:  # a caller's `fits` need not expect what a crafted page sends: that is not offered
        return False


def _sent(key: str) -> bool:
    """Drawn lately, and the browser's value is one its widget offers."""
    return _live(key) and key in st.session_state and _offered(key, st.session_state[key])


def run_started() -> None:
    """Before any widget of a full run: the values of the widgets still drawn, as the browser sent them."""
    kept = _kept()
    for key in st.session_state.setdefault(DRAWN, {}):
        if _sent(key):
            kept[key] = st.session_state[key]
    st.session_state[STARTED] = st.session_state.get(STARTED, -1) + 1
    _keep_what_code_set()


def _keep_what_code_set() -> None:
    """A report that crossed the last run's messages (a component's, say) carries a control's value from before
    that run set it: the set value stands and is sent again, once. (So does a user's choice of exactly the old
    value in the very next run, which then shows what the numbers use.) A callback's put needs none of this: it
    is applied after the report."""
    now, puts = st.session_state[STARTED], st.session_state.setdefault(PUTS, {})
    for key, (run, before, after) in list(puts.items()):
        if run < now - 1:
            del puts[key]
        elif run == now - 1 and key in st.session_state and st.session_state[key] == before:
            del puts[key]  # once: the next report of the old value is the user's own
            _kept()[key] = st.session_state[key] = after


def run_finished() -> None:
    """At the end of a full run (not reached when a run stops early for a rerun)."""
    st.session_state[FINISHED] = st.session_state[STARTED]


def value(key: str, default: Any = None) -> Any:
    """A control's value, drawn in this run or not (in a callback too, before the run has started)."""
    if _sent(key):
        return st.session_state[key]
    return _kept().get(key, default)


def known(key: str) -> bool:
    return key in _kept()


def put(key: str, new: Any) -> None:
    """Set a control's value from code (a callback, a link, a new input): before its widget is drawn in this run."""
    before = st.session_state[key] if key in st.session_state else _kept().get(key)
    if before != new:  # only a change can be crossed by a report of the old value
        st.session_state.setdefault(PUTS, {})[key] = (st.session_state.get(STARTED, 0), before, new)
    _kept()[key] = new
    st.session_state[key] = new


def _maybe_unsent(key: str) -> bool:
    """Last drawn in a run stopped for a rerun: a stopped run can end between a widget's registration and its
    message to the browser, which then mounts it at its own default unless its value is sent again."""
    drawn = st.session_state.setdefault(DRAWN, {}).get(key)
    return drawn is not None and st.session_state.get(FINISHED, 0) < drawn < st.session_state.get(STARTED, 0)


def restore(key: str, default: Any = None, fits: Callable[[Any], bool] | None = None) -> None:
    """Before a widget is drawn: a widget the last finished run did not draw (or perhaps never sent) gets its kept
    value (else `default`), set through session state so that Streamlit sends it to the browser, and so does one
    whose browser sent a value it does not offer, and one drawn so in the run before (the browser can report before
    it mounts a widget, and then mounts it at its own default). Once per run; `fits` vets a kept value."""
    now, fresh = st.session_state.get(STARTED, 0), st.session_state.setdefault(FRESH, {})
    if not _live(key) or _maybe_unsent(key) or (key in st.session_state and not _sent(key)):
        kept = _kept().get(key, default)
        put(key, kept if fits is None or fits(kept) else default)
        fresh[key] = now
    elif fresh.get(key) == now - 1:  # a report sent before the browser mounted it: it would mount at its min
        del fresh[key]
        put(key, value(key, default))
    st.session_state[DRAWN][key] = now


def widget(make: Callable, *args, key: str, default: Any = None, fits: Callable[[Any], bool] | None = None,
           **kwargs) -> Any:  # fmt: skip
    """Draw `make(*args, key=key, **kwargs)` (st.slider, a column's selectbox, ...) with its value kept.

    The widget gets no value or default argument of its own: `default` is its value until the user sets one.
    """
    offers = (_accepts(getattr(make, "__name__", ""), args, kwargs), *((fits,) if fits is not None else ()))
    st.session_state.setdefault(OFFERS, {})[key] = offers
    restore(key, default, fits)
    drawn = make(*args, key=key, **kwargs)
    _kept()[key] = drawn
    return drawn


def _accepts(kind: str, args: tuple, kwargs: dict) -> Callable[[Any], bool]:
    """What a widget drawn as `kind(*args, **kwargs)` accepts: one of its options, a number within its bounds, or a
    bool."""
    if kind in CHOICES:
        options = tuple(kwargs.get("options", args[1] if len(args) > 1 else ()))
        return lambda value: _among(value, options)
    if kind in ("slider", "number_input"):
        low = kwargs.get("min_value", args[1] if len(args) > 1 else None)
        high = kwargs.get("max_value", args[2] if len(args) > 2 else None)
        empty = "value" in kwargs and kwargs["value"] is None  # a number input drawn empty can be emptied again
        return lambda value: (
            (empty and value is None) or all(_within(v, low, high) for v in (value if _is_range(value) else (value,)))
        )
    if kind in SWITCHES:
        return lambda value: isinstance(value, bool)
    return lambda value: True


def _among(value: Any, options: tuple) -> bool:
    plain = isinstance(value, (str, Number)) and not isinstance(value, bool)  # what a page sends may be anything
    return plain and any(value == option for option in options)


def _is_range(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2  # a slider's range: (low, high)


def _within(value: Any, low: Any, high: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, Number) or value != value:
        return False
    return (low is None or value >= low) and (high is None or value <= high)
