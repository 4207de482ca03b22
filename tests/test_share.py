"""Share links (capsviz/ui/share.py): every part of the view the caption names goes into the address bar and
comes back from it; a part that cannot be read is named on the page and the rest still loads."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

import numpy as np  # noqa: E402
from app_pages import draw, heatmap, open_tab, shown, start, start_with  # noqa: E402

from capsviz.analysis import lab, stages  # noqa: E402
from capsviz.ui import share, state  # noqa: E402
from capsviz.ui.app import LINK_CAPTION  # noqa: E402
from capsviz.ui.routing import VIEWS, VOTES  # noqa: E402
from capsviz.ui.sidebar import RUN_PREFIX, SHIPPED  # noqa: E402

LAB, EXPLORE = "Claims lab", "Explore"


def _read(params: dict, runs=frozenset({"20260101-000000-abcdef"}), mnist_size=10_000) -> share.Link:
    return share.read(params, runs=set(runs), mnist_size=mnist_size)


def test_a_link_reads_every_part_of_the_view():
    stage = stages.STAGES[2][0].lower()
    link = _read(
        {"tab": "lab", "src": "mnist", "i": "42", "model": "run:20260101-000000-abcdef", "iters": "2",
         "view": "votes", "iteration": "1", "route": "3", "capsule": "500", "stage": stage, "pose": "5",
         "offsets": ",".join(["0"] * 15 + ["-0.12"]), "rotation": "20", "scale_x": "1.2", "sweep": "shear",
         "sweep_digit": "4"}
    )  # fmt: skip
    assert not link.problems
    assert link.tab == LAB and link.index == 42 and link.image is None
    v = link.values
    assert v[state.CHECKPOINT_CHOICE] == RUN_PREFIX + "20260101-000000-abcdef" and v[state.ROUTING_ITERS] == 2
    assert v[state.ROUTING_VIEW] == VOTES and v[state.ROUTING_ITERATION] == 1
    assert v[state.ROUTING_DIGIT] == 3 and v[state.POSE_CLASS] == 5  # two digits, not one
    assert v[state.INSPECT_CAPSULE] == 500 and v[state.GUIDE_STAGE].startswith(stages.STAGES[2][0])
    assert v[state.POSE_DIM.format(15)] == -0.12 and v[state.POSE_DIM.format(0)] == 0
    assert v[state.LAB_PARAM.format("rotation")] == 20 and v[state.LAB_PARAM.format("scale_x")] == 1.2
    assert v[state.LAB_SWEEP_OF] == "shear" and v[state.LAB_DIGIT] == 4


def test_a_malformed_part_is_named_and_the_rest_is_read():
    link = _read(
        {"tab": "nowhere", "src": "mnist", "i": "10000", "model": "run:gone", "iters": "9", "view": "x",
         "iteration": "two", "route": "10", "capsule": "1152", "stage": "?", "pose": "-1", "offsets": "1,2",
         "rotation": "nan", "shift_x": "99", "sweep": "__class__", "sweep_digit": "", "scale_y": "0.8"}
    )  # fmt: skip
    named = {problem.split("`")[1] for problem in link.problems}
    assert named == {"tab", "i", "model", "iters", "view", "iteration", "route", "capsule", "stage", "pose",
                     "offsets", "rotation", "shift_x", "sweep", "sweep_digit"}  # fmt: skip
    assert link.values == {state.LAB_PARAM.format("scale_y"): 0.8}  # the one good part
    assert "0 to 9,999" in next(p for p in link.problems if p.startswith("`i`"))
    broken = _read({"src": "image", "img": "not-base64!"})
    assert broken.image is None and broken.problems == ["`img`: not a 28x28 image (784 pixels in base64url)"]


def test_parts_that_disagree_or_run_long_are_refused_without_being_read_in_full():
    link = _read({"iters": "2", "iteration": "3", "offsets": ",".join(["0"] * 17)})
    assert link.values == {state.ROUTING_ITERS: 2}
    assert link.problems == ["`offsets`: not 16 numbers from -0.25 to 0.25", "`iteration`: more than `iters` (2)"]
    assert share.decode_image("A" * 10**6) is None  # refused by its length, not decoded


def test_a_part_read_only_with_another_is_named_when_that_one_is_missing():
    alone = _read({"src": "mnist", "i": "5", "iteration": "5"})  # no `iters`: the model's 3
    assert state.ROUTING_ITERATION not in alone.values
    assert alone.problems == ["`iteration`: more than `iters` (3 when not given)"]
    assert _read({"i": "42"}).problems == ["`i`: read only with `src=mnist`"]
    assert _read({"img": "AAAA"}).problems == ["`img`: read only with `src=image`"]
    assert _read({"src": "image", "i": "3", "img": "A"}).problems[-1] == "`i`: read only with `src=mnist`"


def test_names_no_link_holds_are_named_a_few_at_a_time_and_shown_as_typed():
    assert _read({"embed": "true", "embed_options": "light_theme"}).problems == []  # Streamlit's own
    assert _read({"iter": "2"}).problems == ["“iter”: not part of a capsviz link"]
    many = _read({f"p{n:04d}": "1" for n in range(2000)})
    assert many.problems == ["“p0000”, “p0001”, “p0002”, “p0003”, “p0004” and 1,995 more: not part of a capsviz link"]
    crafted = _read({"a`![x](h://i)\n- b": "1"}).problems[0]
    assert crafted == "“a\\`\\!\\[x\\]\\(h\\://i\\) \\- b”: not part of a capsviz link"  # escaped, one line
    assert _read({"a, b": "1", "": "2"}).problems == ["“”, “a, b”: not part of a capsviz link"]
    assert _read({"x" * 30: "1"}).problems == [f"“{'x' * 24}…”: not part of a capsviz link"]
    assert "\u202e" not in _read({"ab\u202ecd": "1"}).problems[0]  # no mark that turns the rest of the line


def test_an_older_link_with_one_digit_sets_both_digits():
    link = _read({"src": "mnist", "i": "7", "digit": "4"})
    assert link.values[state.ROUTING_DIGIT] == 4 and link.values[state.POSE_CLASS] == 4
    link = _read({"digit": "4", "route": "2"})
    assert link.values[state.ROUTING_DIGIT] == 2 and link.values[state.POSE_CLASS] == 4


def _params(app) -> dict[str, str]:
    return {name: v if isinstance(v, str) else v[-1] for name, v in app.query_params.items()}


def _view(app) -> dict:
    keys = (
        state.INPUT_SOURCE, state.ROUTING_ITERS, state.ROUTING_VIEW, state.ROUTING_ITERATION, state.ROUTING_DIGIT,
        state.INSPECT_CAPSULE, state.GUIDE_STAGE, state.POSE_CLASS, state.LAB_SWEEP_OF, state.LAB_DIGIT,
        *(state.POSE_DIM.format(d) for d in range(16)), *(state.LAB_PARAM.format(name) for name in lab.NAMES),
    )  # fmt: skip
    return {key: state_value(app, key) for key in keys} | {"index": app.session_state[state.SAMPLE_INDEX]}


def state_value(app, key: str):
    """A control's value as the page computes with it, drawn or not (state.value, read from the test's side)."""
    kept = app.session_state[state.KEPT]
    return app.session_state[key] if key in app.session_state else kept.get(key)


@pytest.mark.usefixtures("app_env")
def test_a_link_round_trips_every_part_its_caption_names():
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value("MNIST test image").run()
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()
    app.slider(key=state.ROUTING_ITERATION).set_value(1).run()
    app.selectbox(key=state.ROUTING_DIGIT).set_value(3).run()
    app.number_input(key=state.INSPECT_CAPSULE).set_value(500).run()
    app.session_state[state.GUIDE_STAGE] = app.get("button_group")[0].proto.options[3].content
    app.run()
    app.selectbox(key=state.POSE_CLASS).set_value(5).run()
    app.slider(key=state.POSE_DIM.format(2)).set_value(-0.07).run()
    app.radio(key=state.ROUTING_VIEW).set_value(VOTES).run()
    open_tab(app, LAB)
    app.slider(key=state.LAB_PARAM.format("rotation")).set_value(15.0).run()
    app.slider(key=state.LAB_PARAM.format("shift_y")).set_value(-3.0).run()
    app.selectbox(key=state.LAB_SWEEP_OF).set_value("thickness").run()
    app.selectbox(key=state.LAB_DIGIT).set_value(8).run()
    view = _view(app)
    params = _params(app)
    assert params["tab"] == "lab" and params["route"] == "3" and params["pose"] == "5"
    for part in ("tab", "input", "model", "routing iterations", "parent digit", "inspected capsule", "stage",
                 "pose digit", "offsets", "transform", "sweep"):  # fmt: skip
        assert part in LINK_CAPTION, part

    again = start_with(params)
    assert again.session_state[state.TABS] == LAB
    assert not again.warning
    assert any("2 routing iterations" in m.value for m in again.markdown)  # the lab, on the link's input
    open_tab(again, EXPLORE)
    assert _view(again) == view
    for key in (state.ROUTING_DIGIT, state.POSE_CLASS, state.ROUTING_ITERS):  # and the browser shows them
        widget = next(w for kind in ("selectbox", "slider") for w in again.get(kind) if w.key == key)
        assert shown(widget) in (str(view[key]), [float(view[key])])
    assert _params(again) == {name: value for name, value in params.items() if name != "tab"}
    open_tab(again, LAB)
    assert _params(again) == params


@pytest.mark.usefixtures("app_env")
def test_every_routing_view_round_trips_through_a_link():
    app = draw(start(), 3)
    for view in VIEWS:
        app.radio(key=state.ROUTING_VIEW).set_value(view).run()
        params = _params(app)
        again = start_with(params)
        assert not again.warning, (view, params)
        assert again.radio(key=state.ROUTING_VIEW).value == view


@pytest.mark.usefixtures("app_env")
def test_a_link_to_a_drawing_on_the_lab_tab_shows_that_drawing_there():
    app = draw(start(), 3)
    open_tab(app, LAB)
    again = start_with(_params(app))
    assert again.session_state[state.TABS] == LAB
    assert not any("has no digit yet" in c.value for c in again.caption)
    drawn, linked = heatmap(app, "fig_lab_images")[:, :28], heatmap(again, "fig_lab_images")[:, :28]
    assert np.abs(drawn - linked).max() <= 0.5 / 255 + 1e-6  # the link carries the 28x28 input in 8 bits


@pytest.mark.usefixtures("app_env")
def test_a_malformed_link_says_which_part_and_loads_the_rest():
    app = start_with({"src": "image", "img": "not-base64!", "iters": "9", "route": "x", "pose": "2", "tab": "lab",
                      "rotation": "30", "model": "run:[click](https://example.invalid)"})  # fmt: skip
    (warning,) = [w for w in app.warning if "could not be read" in w.value]
    for name in ("img", "iters", "route", "model"):
        assert f"`{name}`" in warning.value, name
    assert "example.invalid" not in warning.value  # named, never echoed
    assert app.session_state[state.TABS] == LAB
    assert app.slider(key=state.LAB_PARAM.format("rotation")).value == 30.0
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value == SHIPPED
    app.button(key=state.SHARE_DISMISS).click().run()
    assert not any("could not be read" in w.value for w in app.warning)
