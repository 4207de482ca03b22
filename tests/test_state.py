"""Every control keeps its value across tab switches, and the browser is told it (capsviz/ui/state.py).

Tabs are lazy: a closed tab's widgets are not drawn, so Streamlit forgets them, and a widget drawn
again mounts in the browser at its default unless the run sends its value (the proto's set_value).
AppTest reads values from the server; `shown` reads what a browser that just mounted the widget
displays, from the same proto the browser gets.
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from app_pages import open_tab, shown, start  # noqa: E402

from capsviz.ui import state  # noqa: E402
from capsviz.ui.inputs import BY_CLASS, RANDOM, SAMPLE  # noqa: E402
from capsviz.ui.routing import COUPLINGS, VOTES  # noqa: E402
from capsviz.ui.training import CUSTOM  # noqa: E402

pytestmark = pytest.mark.usefixtures("app_env")
LAB, EXPLORE, TRAIN, TWO = "Claims lab", "Explore", "Train", "Two digits"
EXPLORE_KEYS = (
    state.INPUT_SOURCE,
    state.SAMPLE_MODE,
    state.SAMPLE_DIGIT,
    state.ROUTING_ITERS,
    state.ROUTING_ITERATION,
    state.ROUTING_DIGIT,
    state.ROUTING_VIEW,
    state.GUIDE_STAGE,
    state.POSE_CLASS,
    *(state.POSE_DIM.format(d) for d in range(16)),
)
LAB_KEYS = (*(state.LAB_PARAM.format(n) for n in ("rotation", "scale_x", "shear", "thickness")), state.LAB_SWEEP_OF)
LAB_KEYS += (state.LAB_DIGIT,)
TRAIN_KEYS = (state.TRAIN_PRESET, state.TRAIN_EPOCHS, state.TRAIN_BATCH, state.TRAIN_LR, state.TRAIN_ITERS)
TRAIN_KEYS += (state.TRAIN_LIMIT, state.TRAIN_EVAL_LIMIT)


def _widget(app, key: str):
    for kind in ("radio", "slider", "selectbox", "number_input", "checkbox", "button_group"):
        for widget in app.get(kind):
            if widget.key == key:
                return widget
    raise AssertionError(f"no widget {key} on the page")


def _serialized(widget):
    """The value the server computes with, as the browser would send it back."""
    ws = widget._widget_state
    field = ws.WhichOneof("value")
    value = getattr(ws, field) if field else None
    return list(value.data) if hasattr(value, "data") else value


def controls(app, keys) -> dict:
    return {key: _serialized(_widget(app, key)) for key in keys}


def assert_shown_as_kept(app, kept: dict) -> None:
    """After a tab switch every widget of the tab is newly mounted: the browser must show the kept value."""
    for key, value in kept.items():
        widget = _widget(app, key)
        assert _serialized(widget) == value, key
        assert shown(widget) == value, f"{key}: the browser shows {shown(widget)!r}, the page computes with {value!r}"


def test_every_control_keeps_its_value_and_shows_it_across_three_round_trips():
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.SAMPLE_MODE).set_value(BY_CLASS).run()
    app.selectbox(key=state.SAMPLE_DIGIT).set_value(7).run()
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()
    app.slider(key=state.ROUTING_ITERATION).set_value(1).run()
    app.selectbox(key=state.ROUTING_DIGIT).set_value(3).run()
    app.selectbox(key=state.POSE_CLASS).set_value(5).run()
    app.slider(key=state.POSE_DIM.format(3)).set_value(0.12).run()
    stage = app.get("button_group")[0].proto.options[2].content
    app.session_state[state.GUIDE_STAGE] = stage
    app.run()
    app.radio(key=state.ROUTING_VIEW).set_value(VOTES).run()
    explore = controls(app, EXPLORE_KEYS)
    picture = (app.metric[0].value, [c.value for c in app.caption if c.value.startswith("MNIST test image #")])
    assert explore[state.SAMPLE_DIGIT] == "7" and explore[state.GUIDE_STAGE] == [stage]

    open_tab(app, LAB)
    app.slider(key=state.LAB_PARAM.format("rotation")).set_value(20.0).run()
    app.slider(key=state.LAB_PARAM.format("scale_x")).set_value(1.2).run()
    app.selectbox(key=state.LAB_SWEEP_OF).set_value("shear").run()
    app.selectbox(key=state.LAB_DIGIT).set_value(4).run()
    lab = controls(app, LAB_KEYS)
    assert any("2 routing iterations" in m.value for m in app.markdown)

    open_tab(app, TRAIN)
    app.radio(key=state.TRAIN_PRESET).set_value(CUSTOM).run()
    app.number_input(key=state.TRAIN_EPOCHS).set_value(3).run()
    app.number_input(key=state.TRAIN_LR).set_value(0.002).run()
    app.slider(key=state.TRAIN_ITERS).set_value(2).run()
    train = controls(app, TRAIN_KEYS)

    for _ in range(3):
        open_tab(app, EXPLORE)
        assert_shown_as_kept(app, explore)
        assert (app.metric[0].value, [c.value for c in app.caption if c.value.startswith("MNIST test image #")]) == (
            picture
        )
        open_tab(app, LAB)
        assert_shown_as_kept(app, lab)
        assert any("2 routing iterations" in m.value for m in app.markdown)  # Explore's count, not the slider's min
        open_tab(app, TRAIN)
        assert_shown_as_kept(app, train)


def test_the_inspected_capsule_is_kept_while_another_routing_view_is_shown():
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.number_input(key=state.INSPECT_CAPSULE).set_value(500).run()
    app.radio(key=state.ROUTING_VIEW).set_value(VOTES).run()  # the number input is not drawn now
    open_tab(app, LAB)
    open_tab(app, EXPLORE)
    app.radio(key=state.ROUTING_VIEW).set_value(COUPLINGS).run()
    assert_shown_as_kept(app, {state.INSPECT_CAPSULE: 500.0})
    assert any("Primary capsule 500" in m.value for m in app.markdown)


def test_a_control_hidden_by_another_choice_comes_back_with_its_value():
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.SAMPLE_MODE).set_value(BY_CLASS).run()
    app.selectbox(key=state.SAMPLE_DIGIT).set_value(6).run()
    app.radio(key=state.SAMPLE_MODE).set_value(RANDOM).run()  # the digit chooser is not drawn
    app.radio(key=state.SAMPLE_MODE).set_value(BY_CLASS).run()
    assert_shown_as_kept(app, {state.SAMPLE_DIGIT: "6"})
    assert any("labelled **6**" in c.value for c in app.caption)


def test_the_lab_sliders_and_its_routing_count_come_back_as_they_were():
    app = start()
    app.slider(key=state.ROUTING_ITERS).set_value(4).run()
    open_tab(app, LAB)
    app.slider(key=state.LAB_PARAM.format("rotation")).set_value(-20.0).run()
    app.slider(key=state.LAB_PARAM.format("shift_x")).set_value(3.0).run()
    app.selectbox(key=state.LAB_DIGIT).set_value(2).run()
    lab = controls(app, LAB_KEYS + (state.LAB_PARAM.format("shift_x"),))
    open_tab(app, EXPLORE)
    open_tab(app, LAB)
    assert_shown_as_kept(app, lab)  # not each slider's minimum, nor digit 0
    assert any("4 routing iterations" in m.value for m in app.markdown)


def test_the_two_digits_tab_and_an_uploads_crop_keep_their_values_across_three_round_trips():
    import io

    from capsviz.ui.inputs import UPLOAD
    from capsviz.ui.two_digit_input import DIGITS

    from drawings import draw_digit

    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    photo = io.BytesIO()
    draw_digit(4).save(photo, format="PNG")
    app.file_uploader(key=state.UPLOAD).set_value(("four.png", photo.getvalue(), "image/png")).run()
    app.slider(key=state.UPLOAD_CROP_X).set_value([10, 90]).run()
    app.slider(key=state.UPLOAD_THRESHOLD).set_value(20).run()
    upload = controls(app, (state.INPUT_SOURCE, state.UPLOAD_CROP_X, state.UPLOAD_CROP_Y, state.UPLOAD_THRESHOLD))
    assert upload[state.UPLOAD_CROP_X] == [10, 90] and upload[state.UPLOAD_THRESHOLD] == [20]  # applied
    model_sees = app.session_state[state.LAB_INPUT].x.clone()  # the cropped 28x28
    seen = app.metric[0].value

    open_tab(app, TWO)
    app.radio(key=state.TWO_SOURCE).set_value(DIGITS).run()
    app.selectbox(key=state.TWO_CLASS.format(0)).set_value(1).run()
    app.selectbox(key=state.TWO_CLASS.format(1)).set_value(7).run()
    app.slider(key=state.TWO_SHIFT.format(2)).set_value(-3).run()
    app.slider(key=state.TWO_ITERS).set_value(2).run()
    app.selectbox(key=state.TWO_EXTRA).set_value(5).run()
    two_keys = (state.TWO_SOURCE, state.TWO_CLASS.format(0), state.TWO_CLASS.format(1), state.TWO_ITERS,
                state.TWO_EXTRA, *(state.TWO_SHIFT.format(k) for k in range(4)))  # fmt: skip
    two = controls(app, two_keys)
    assert [two[k] for k in two_keys[1:5]] == ["1", "7", [2], "5"] and two[state.TWO_SHIFT.format(2)] == [-3]
    picked = app.session_state[state.TWO_PICKED]

    for _ in range(3):
        open_tab(app, EXPLORE)
        assert_shown_as_kept(app, upload)
        assert app.metric[0].value == seen and app.session_state[state.LAB_INPUT].x.equal(model_sees)
        open_tab(app, TWO)
        assert_shown_as_kept(app, two)
        assert app.session_state[state.TWO_PICKED] == picked  # the same two test digits


def test_a_widget_first_drawn_in_a_run_stopped_for_a_rerun_is_sent_with_its_value_next_run():
    """A run stopped for a rerun can end after a widget's registration but before its message reaches the browser:
    the next run sends the value again, or the browser would mount it at the slider's minimum."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from capsviz.ui import state

        state.run_started()
        if st.session_state.get("show"):
            state.widget(st.slider, "Iteration shown", 1, 5, key="iteration", default=3)
        if not st.session_state.get("stopped"):  # as if a rerun request stopped the run here
            state.run_finished()

    app = AppTest.from_function(page).run()
    app.session_state["show"], app.session_state["stopped"] = True, True
    app.run()
    app.session_state["stopped"] = False
    app.run()
    slider = app.slider(key="iteration")
    assert slider.value == 3 and slider.proto.set_value and shown(slider) == [3]
    app.run()  # once more: the browser may have reported before it mounted the slider
    app.run()  # by now it holds it: nothing is sent again
    assert app.slider(key="iteration").value == 3 and not app.slider(key="iteration").proto.set_value


def test_a_widget_first_drawn_in_a_finished_run_is_sent_again_the_run_after():
    """A browser can send its next report (the canvas reporting an example it drew) before it mounts a widget that
    the last run drew for the first time; it then mounts the widget at its default. So the run after sends the value
    once more: an example's 'Iteration shown' read 1 while the views showed iteration 3, about one time in three."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from capsviz.ui import state

        state.run_started()
        if st.session_state.get("show"):
            state.widget(st.slider, "Iteration shown", 1, 5, key="iteration", default=3)
        state.run_finished()

    app = AppTest.from_function(page).run()
    app.session_state["show"] = True
    app.run()
    assert app.slider(key="iteration").proto.set_value
    app.run()  # the report that left the browser before the slider was mounted
    slider = app.slider(key="iteration")
    assert slider.value == 3 and slider.proto.set_value and shown(slider) == [3]
    app.slider(key="iteration").set_value(4).run()  # the user's own choice, later, is kept and not sent back
    slider = app.slider(key="iteration")
    assert slider.value == 4 and not slider.proto.set_value


def test_a_report_that_crossed_a_value_set_by_the_last_run_does_not_undo_it():
    """A new input resets the parent digit to the prediction; a component's report sent before the browser got that
    (the canvas redrawing an example) carries the old digit: the reset stands and is sent again, so the dropdown
    and the charts agree (they showed 1 and 7)."""
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        from capsviz.ui import state

        state.run_started()
        if st.session_state.pop("new_input", False):
            state.put("digit", 1)  # what views.sync_to_input does for a new prediction
        st.session_state["used"] = state.widget(st.selectbox, "Parent capsule", range(10), key="digit", default=7)
        state.run_finished()

    app = AppTest.from_function(page).run()
    app.session_state["new_input"] = True
    app.run()
    assert app.session_state["used"] == 1
    app.selectbox(key="digit").set_value(7).run()  # the report that left the browser before the reset arrived
    selectbox = app.selectbox(key="digit")
    assert app.session_state["used"] == 1 and selectbox.value == 1 and selectbox.proto.set_value
    app.selectbox(key="digit").set_value(7).run()  # a later choice of 7 is the user's own
    assert app.session_state["used"] == 7
