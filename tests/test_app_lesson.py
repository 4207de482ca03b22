"""A lesson through Streamlit's AppTest: the first screen's examples, presentation mode, playing the routing,
uniform against routed couplings, and the CSV downloads.

What only a browser does (the page's timer that asks for the next iteration, a clicker's keys, a
real download) is in tests/test_browser.py; here those elements' reports are sent the way the
page sends them (tests/page_messages.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")

from app_pages import array, component_data, draw, figure, open_tab, shown, start  # noqa: E402
from page_messages import fires, sends  # noqa: E402

from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint  # noqa: E402
from capsviz.examples import EXAMPLES, canvas_objects, example_input  # noqa: E402
from capsviz.preprocess import to_mnist  # noqa: E402
from capsviz.ui import state  # noqa: E402
from capsviz.ui.inputs import DRAW, SAMPLE  # noqa: E402
from capsviz.ui.present import SECTIONS  # noqa: E402
from capsviz.ui.routing import COMPARE, VOTES  # noqa: E402
from capsviz.ui.routing_play import STEP_SECONDS  # noqa: E402
from capsviz.ui.widgets import PRESENT_CHART_FONT, PRESENT_TEXT_SCALE  # noqa: E402

from drawings import draw_digit  # noqa: E402


def load_example(app, name: str):
    app.button(key=state.LESSON_EXAMPLE.format(name)).click().run()
    assert not app.exception, app.exception
    return app


def test_the_first_screens_two_digit_example_opens_the_two_digits_tab_on_a_test_pair(app_env):
    from capsviz.ui.lesson import TWO_DIGIT_EXAMPLE

    app = start()
    app.button(key=state.LESSON_TWO).click().run()
    assert not app.exception, app.exception
    assert app.session_state[state.TABS] == "Two digits"
    assert app.number_input(key=state.TWO_PAIR).value == TWO_DIGIT_EXAMPLE
    assert any(c.value.startswith(f"Test pair #{TWO_DIGIT_EXAMPLE}:") for c in app.caption)


def test_the_first_screen_explains_capsules_and_its_examples_load_onto_the_canvas(app_env):
    app = start()
    assert any("A **capsule**" in md.value for md in app.markdown)
    assert [app.button(key=state.LESSON_EXAMPLE.format(n)).label for n in EXAMPLES] == [
        "A clean 3", "An ambiguous 4/9", "A rotated 7", "A thin 1",
    ]  # fmt: skip
    popovers = len(app.get("popover"))  # the pen's; the first screen shows the panel itself
    load_example(app, "clean_3")
    assert app.metric[0].value == "3"
    memory = app.session_state[state.CANVAS_MEMORY]
    assert memory["load"]["objects"] == memory["objects"] == canvas_objects(EXAMPLES["clean_3"])  # editable strokes
    assert any("On the canvas: a clean 3" in c.value for c in app.caption)
    assert len(app.get("popover")) == popovers + 1  # an input is there: the panel folds into a popover
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    load_example(app, "ambiguous_4_9")  # from another input, an example brings back the canvas
    assert app.radio(key=state.INPUT_SOURCE).value == DRAW
    lengths = array(figure(app, "fig_lengths")["data"][0]["y"])
    assert lengths[4] > 0.5 and lengths[9] > 0.5  # the model sees a 4 and a 9
    app.session_state[state.CANVAS_MEMORY]["objects"] = []  # the page reports a cleared canvas
    app.run()
    assert not any("On the canvas" in c.value for c in app.caption)


def test_an_example_replaces_the_image_a_link_brought(app_env):
    app = start()
    app.session_state[state.SHARE_IMAGE] = example_input(EXAMPLES["thin_1"])
    app.run()
    assert app.metric[0].value == "1"
    load_example(app, "rotated_7")
    assert state.SHARE_IMAGE not in app.session_state and app.metric[0].value == "7"


def present(app, on: bool = True):
    app.toggle(key=state.PRESENT).set_value(on).run()
    assert not app.exception, app.exception
    return app


def step(app, button: str):
    app.button(key=button).click().run()
    assert not app.exception, app.exception
    return app


def test_presentation_mode_walks_the_five_sections_with_the_normal_pages_state(app_env):
    app = draw(start(), 3)
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()
    app.selectbox(key=state.ROUTING_DIGIT).set_value(5).run()
    present(app)
    assert not app.tabs and not app.title  # one section per screen, no tabs
    assert app.session_state[state.PRESENT_SECTION] == SECTIONS[0] and app.metric[0].value == "3"
    assert app.button(key=state.PRESENT_BACK).disabled
    step(app, state.PRESENT_NEXT)  # capsule lengths
    lengths = figure(app, "fig_lengths")["layout"]
    assert lengths["xaxis"]["tickfont"]["size"] >= PRESENT_CHART_FONT and lengths["font"]["size"] >= 14
    assert app.get("download_button")  # the data goes out from here too
    step(app, state.PRESENT_NEXT)  # routing: the normal page's iterations and digit, on screen too
    assert shown(app.slider(key=state.ROUTING_ITERS)) == [2] and shown(app.selectbox(key=state.ROUTING_DIGIT)) == "5"
    assert component_data(app, "capsviz.coupling_tiles")["font_scale"] == PRESENT_TEXT_SCALE
    app.selectbox(key=state.ROUTING_DIGIT).set_value(7).run()
    step(app, state.PRESENT_NEXT)  # pose sliders
    assert component_data(app, "capsviz.live_decoder")["pose"]
    step(app, state.PRESENT_NEXT)  # claims
    assert figure(app, "fig_lab_sweep") and app.button(key=state.PRESENT_NEXT).disabled
    step(app, state.PRESENT_BACK)
    assert app.session_state[state.PRESENT_SECTION] == "Pose sliders"
    step(app, state.PRESENT_LEAVE)  # the normal page, as the screens left it
    assert app.tabs and app.metric[0].value == "3"
    assert shown(app.slider(key=state.ROUTING_ITERS)) == [2] and shown(app.selectbox(key=state.ROUTING_DIGIT)) == "7"
    assert component_data(app, "capsviz.coupling_tiles")["font_scale"] == 1.0
    assert figure(app, "fig_lengths")["layout"].get("font") is None  # the page's own sizes again
    present(app)
    assert app.session_state[state.PRESENT_SECTION] == "Pose sliders"  # it resumes where it was left


def test_presentations_input_screen_puts_the_lesson_beside_the_canvas_never_above_it(app_env):
    """On a phone the columns stack: the lesson panel above the canvas pushed the canvas below the fold. As on the
    normal page, the panel stands beside the input (under it on a phone) and folds into a popover once there is one."""
    app = present(start())
    canvas_side, lesson_side = app.columns[:2]
    assert canvas_side.radio(key=state.INPUT_SOURCE).value == DRAW
    assert [b.key for b in lesson_side.button] == [state.LESSON_EXAMPLE.format(name) for name in EXAMPLES]
    load_example(app, "clean_3")
    lesson_side = app.columns[1]
    assert lesson_side.get("popover") and lesson_side.metric[0].value == "3"  # folded, above the prediction


def test_a_clickers_keys_step_the_sections_and_anything_else_is_ignored(app_env):
    app = present(draw(start(), 3))
    for report, section in (({"step": 1}, SECTIONS[1]), ({"step": 1}, SECTIONS[2]), ({"step": -1}, SECTIONS[1])):
        fires(app, state.PRESENT_KEYS, "step", report["step"])  # Page Down, Page Down, Page Up, as the page fires them
        assert not app.exception, app.exception
        assert app.session_state[state.PRESENT_SECTION] == section
    for junk in (2, True, "1", None, [1]):
        fires(app, state.PRESENT_KEYS, "step", junk)
        assert not app.exception and app.session_state[state.PRESENT_SECTION] == SECTIONS[1], junk


def test_presentation_without_an_input_says_where_to_give_one(app_env):
    app = present(start())
    step(app, state.PRESENT_NEXT)
    assert any("Input screen" in i.value for i in app.info)


def ticker(app) -> dict | None:
    """The data the page's timer was mounted with: None while nothing plays."""
    return component_data(app, "capsviz.routing_ticker")


def tick(app, play: int, iteration: int):
    """What the page reports once it has shown `iteration` of play number `play` for STEP_SECONDS."""
    sends(app, state.ROUTING_TICKER, {"tick": [play, iteration]})
    assert not app.exception, app.exception
    return app.slider(key=state.ROUTING_ITERATION).value


def test_play_steps_the_routing_iterations_one_report_at_a_time(app_env):
    app = draw(start(), 3)
    assert app.slider(key=state.ROUTING_ITERATION).value == 3 and ticker(app) is None
    app.button(key=state.ROUTING_PLAY).click().run()
    assert app.slider(key=state.ROUTING_ITERATION).value == 1 and app.button(key=state.ROUTING_PLAY).label == "Pause"
    assert ticker(app) == {"play": 1, "step": 1, "delay_ms": round(STEP_SECONDS * 1000)}
    assert tick(app, 1, 1) == 2
    assert "iteration 2" in component_data(app, "capsviz.coupling_tiles")["title"]  # the views follow
    app.run()  # the same report again (a rerun for another reason): no second step
    assert app.slider(key=state.ROUTING_ITERATION).value == 2
    assert tick(app, 1, 2) == 3
    assert app.button(key=state.ROUTING_PLAY).label == "Play" and ticker(app) is None  # the last one: done
    app.button(key=state.ROUTING_PLAY).click().run()  # from the end, Play starts again at 1
    assert app.slider(key=state.ROUTING_ITERATION).value == 1 and ticker(app)["play"] == 2
    app.button(key=state.ROUTING_PLAY).click().run()  # Pause
    assert tick(app, 2, 1) == 1 and app.button(key=state.ROUTING_PLAY).label == "Play"
    assert tick(app, 1, 1) == 1  # a report of an older play does nothing


def test_a_player_report_that_is_not_the_current_step_moves_nothing(app_env):
    app = draw(start(), 3)
    app.button(key=state.ROUTING_PLAY).click().run()
    for junk in ("1", [1], [1, 1, 1], [True, 1], [1.0, 1], [1, "1"], None, {"play": 1}, [2**70, 1]):
        sends(app, state.ROUTING_TICKER, {"tick": junk})
        assert not app.exception, (junk, app.exception)
        assert app.slider(key=state.ROUTING_ITERATION).value == 1, junk
    assert tick(app, 1, 1) == 2  # the real report still steps


def test_uniform_vs_routed_shows_one_iteration_beside_the_models_count(app_env):
    app = draw(start(), 3)
    app.slider(key=state.ROUTING_ITERS).set_value(5).run()  # the comparison uses the model's own 3
    app.radio(key=state.ROUTING_VIEW).set_value(COMPARE).run()
    assert not app.exception, app.exception
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    x = to_mnist(draw_digit(3))
    for iters in (1, 3):
        with torch.no_grad():
            expected = model(x[None], routing_iters=iters).lengths[0].numpy()
        bars = array(figure(app, f"fig_compare_lengths_{iters}")["data"][0]["y"])
        np.testing.assert_allclose(bars, expected, atol=1e-5)
    split = figure(app, "fig_compare_split_1")
    assert "36/36 tied" in split["layout"]["title"]["text"]  # uniform couplings: all tied
    assert any("Routed: 3 iterations (the model's count)" in md.value for md in app.markdown)
    assert any(md.value.startswith("**Measured:** With uniform couplings") for md in app.markdown)
    assert not [s for s in app.selectbox if s.key == state.ROUTING_DIGIT]  # a parent digit it would not use
    assert not [s for s in app.slider if s.key == state.ROUTING_ITERATION]  # no slider that would change nothing
    assert any(c.value == "Iterations shown: 1 and 3, side by side." for c in app.caption)
    app.radio(key=state.ROUTING_VIEW).set_value(VOTES).run()  # back: the slider as it was
    assert app.slider(key=state.ROUTING_ITERATION).value == 5 and shown(app.slider(key=state.ROUTING_ITERATION)) == [5]
    assert app.selectbox(key=state.ROUTING_DIGIT).value == 3  # the parent digit too, where it is used


def test_downloads_offer_the_inputs_numbers_and_the_lab_sweep_without_a_rerun(app_env):
    app = draw(start(), 3)
    buttons = {b.proto.id.rsplit("-", 1)[-1]: b.proto for b in app.get("download_button")}
    for key in (state.DOWNLOAD_CAPSULES, state.DOWNLOAD_ROUTING):
        assert buttons[key].deferred_file_id and buttons[key].ignore_rerun  # written on click, no rerun
    open_tab(app, "Claims lab")
    sweep = [b.proto for b in app.get("download_button") if b.proto.id.endswith(state.DOWNLOAD_SWEEP)]
    assert sweep and sweep[0].deferred_file_id
