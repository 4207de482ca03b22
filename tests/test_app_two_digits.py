"""The Two digits tab through Streamlit's AppTest with the shipped two-digit models: a test pair (the synthetic MNIST
builds 40), the Explore tab's input on the two-digit canvas, and links."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")
from app_pages import APP, array, draw, figure, open_tab, png_bytes, start  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from capsviz import multimnist  # noqa: E402
from capsviz.analysis.two_digits import centred, read, separate  # noqa: E402
from capsviz.checkpoint import PRETRAINED_DIR, load_checkpoint  # noqa: E402
from capsviz.data import load_mnist  # noqa: E402
from capsviz.preprocess import to_mnist  # noqa: E402
from capsviz.ui import state  # noqa: E402
from capsviz.ui.two_digit_input import DIGITS, EXPLORED  # noqa: E402
from capsviz.ui.two_digits import NAMES  # noqa: E402

from drawings import draw_digit  # noqa: E402

TAB = "Two digits"


def _readings(app) -> list[dict]:
    return app.table[0].value.to_dict("records")  # the first table of the tab


def test_a_test_pair_is_read_by_the_three_models_as_the_command_line_reads_it(app_env, synthetic_root):
    app = start(TAB)
    pairs = multimnist.fixed_test_pairs(load_mnist(synthetic_root, train=False))
    app.number_input(key=state.TWO_PAIR).set_value(5).run()
    assert not app.exception, app.exception
    rows = _readings(app)
    assert [row["model"] for row in rows] == list(NAMES.values())
    for row, name in zip(rows, NAMES):
        model, _ = load_checkpoint(PRETRAINED_DIR / f"{name}.safetensors")
        with torch.no_grad():
            top = model.scores(pairs.images[5:6].float().div(255)[:, None]).topk(2).indices[0].tolist()
        assert row["names"] == f"{top[0]} and {top[1]}"
        assert row["right"] == ("both" if set(top) == set(pairs.labels[5].tolist()) else "no")
    assert any(f"Test pair #5: a {pairs.labels[5, 0]} and a {pairs.labels[5, 1]}" in c.value for c in app.caption)


def test_one_routing_iteration_leaves_every_coupling_uniform_and_three_draw_three_maps(app_env):
    app = start(TAB)
    maps = figure(app, "two_couplings")["data"]
    assert len(maps) == 3  # the CapsNet's default: the count it was trained with
    span = max(float(np.abs(array(m["z"])).max()) for m in maps)
    assert list(array(maps[-1]["colorbar"]["tickvals"])) == pytest.approx([-span, 0, span], rel=1e-4)  # its ends, named
    assert any(f"±{span:.2f} points" in c.value for c in app.caption)
    app.slider(key=state.TWO_ITERS).set_value(1).run()
    maps = figure(app, "two_couplings")["data"]
    assert len(maps) == 1 and not array(maps[0]["z"]).any()  # c = 1/10 for every digit: no difference anywhere
    assert not [m for m in app.markdown if m.value.startswith("This picture, after iteration 1")]  # nothing moved yet
    assert "3 iterations" not in figure(app, "two_scores_figure")["layout"]["title"]["text"]


def _panel_titles(app) -> list[str]:
    """The pair figure's panel titles as read (wrapped to a phone's width: their line breaks read as spaces)."""
    return [a["text"].replace("<br>", " ") for a in figure(app, "two_pair_figure")["layout"]["annotations"]]


def test_the_explore_tabs_drawing_is_read_on_the_two_digit_canvas(app_env):
    app = draw(start(), 7)
    open_tab(app, TAB)
    app.radio(key=state.TWO_SOURCE).set_value(EXPLORED).run()
    assert not app.exception, app.exception
    model, _ = load_checkpoint(PRETRAINED_DIR / "capsnet_multimnist.safetensors")
    expected = read(model, centred(to_mnist(draw_digit(7))), 3).named
    assert _readings(app)[0]["names"] == f"{expected[0]} and {expected[1]}"
    assert _readings(app)[0]["right"] == ""  # a drawing has no labels to be right about
    titles = _panel_titles(app)
    assert titles[:2] == ["Input", f"CapsNet: {expected[0]} red, {expected[1]} blue"]
    assert titles[2].startswith("Without routing: ")  # the same picture through the CapsNet trained without it


def test_a_link_opens_the_tab_on_its_pair_and_routing_count(app_env):
    app = AppTest.from_file(APP, default_timeout=120)
    app.query_params.update({"tab": "two", "two_src": "pair", "pair": "12", "two_iters": "2", "also": "5"})
    app.run()
    assert not app.exception, app.exception
    assert app.number_input(key=state.TWO_PAIR).value == 12 and app.slider(key=state.TWO_ITERS).value == 2
    assert app.selectbox(key=state.TWO_EXTRA).value == 5  # the extra capsule reconstructed
    params = {name: v if isinstance(v, str) else v[-1] for name, v in app.query_params.items()}
    assert (params["tab"], params["two_src"], params["pair"], params["two_iters"], params["also"]) == (
        "two", "pair", "12", "2", "5")  # fmt: skip
    app.selectbox(key=state.TWO_EXTRA).set_value(-1).run()  # "none": no part of the link
    assert "also" not in app.query_params


def test_a_bad_pair_in_a_link_is_named_and_the_tab_still_opens(app_env):
    app = AppTest.from_file(APP, default_timeout=120)
    app.query_params.update({"tab": "two", "pair": "10000", "two_iters": "9"})
    app.run()
    assert not app.exception, app.exception
    warning = next(w.value for w in app.warning if "could not be read" in w.value)
    assert "`pair`" in warning and "`two_iters`" in warning
    assert app.number_input(key=state.TWO_PAIR).value == 0 and app.slider(key=state.TWO_ITERS).value == 3


def test_two_digits_by_class_are_shifted_as_the_sliders_say_and_the_link_keeps_them(app_env, synthetic_root):
    app = start(TAB)
    app.radio(key=state.TWO_SOURCE).set_value(DIGITS).run()
    app.selectbox(key=state.TWO_CLASS.format(0)).set_value(1).run()
    app.selectbox(key=state.TWO_CLASS.format(1)).set_value(7).run()
    app.slider(key=state.TWO_SHIFT.format(0)).set_value(-4).run()  # the first digit, 4 px left
    app.slider(key=state.TWO_SHIFT.format(3)).set_value(3).run()  # the second, 3 px down
    assert not app.exception, app.exception
    digits = load_mnist(synthetic_root, train=False)
    first, second = app.session_state[state.TWO_PICKED]
    assert (int(digits.labels[first]), int(digits.labels[second])) == (1, 7)
    shown = array(figure(app, "two_pair_figure")["data"][0]["z"])[..., 0]  # (36, 36) the input, grey
    expected = torch.zeros(36, 36, dtype=torch.int32)
    expected[4:32, 0:28] += digits.images[first]  # row shift 0, column shift -4
    expected[7:35, 4:32] += digits.images[second]  # row shift 3, column shift 0
    assert (shown == expected.clamp(max=255).numpy()).all()
    params = {name: v if isinstance(v, str) else v[-1] for name, v in app.query_params.items()}
    assert params["two_src"] == "digits" and params["digits"] == f"{first},{second}" and params["shifts"] == "-4,0,0,3"
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params.update(params)
    again.run()
    assert not again.exception, again.exception
    assert array(figure(again, "two_pair_figure")["data"][0]["z"]).tolist() == figure_z(app)
    assert again.selectbox(key=state.TWO_CLASS.format(0)).value == 1


def figure_z(app) -> list:
    return array(figure(app, "two_pair_figure")["data"][0]["z"]).tolist()


def test_any_other_capsule_can_be_reconstructed_beside_the_two(app_env):
    app = start(TAB)
    app.selectbox(key=state.TWO_EXTRA).set_value(4).run()
    assert not app.exception, app.exception
    titles = _panel_titles(app)
    assert len(figure(app, "two_pair_figure")["data"]) == 4 and titles[3].startswith("CapsNet, capsule 4 (")


def test_two_digits_drawn_with_two_pens_are_read_and_segmented_by_their_colours(app_env):
    from PIL import Image

    from capsviz.analysis.two_digits import from_two_colours
    from capsviz.ui.two_digit_input import CANVAS, DRAWN

    app = start(TAB)
    app.radio(key=state.TWO_SOURCE).set_value(DRAWN).run()
    assert any("red pen" in info.value for info in app.info)  # nothing drawn yet
    one = np.asarray(draw_digit(1, box=(90, 40, 190, 240), width=18).convert("L"))
    zero = np.asarray(draw_digit(0, box=(70, 60, 210, 230), width=18).convert("L"))
    rgb = np.stack([one, np.zeros_like(one), zero], axis=-1)  # red 1 over blue 0, as the additive canvas adds
    image = Image.fromarray(rgb).convert("RGBA")
    data = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    app.session_state[CANVAS.canvas] = {"drawing": {"raw": {"objects": []}, "data": data, "load": 0}}
    app.run()
    assert not app.exception, app.exception
    model, _ = load_checkpoint(PRETRAINED_DIR / "capsnet_multimnist.safetensors")
    x, _ = from_two_colours(np.asarray(image)[..., :3])
    expected = read(model, x, 3).named
    assert _readings(app)[0]["names"] == f"{expected[0]} and {expected[1]}" and _readings(app)[0]["right"] == ""
    said = [m.value for m in app.markdown if m.value.startswith("This picture, after iteration 3:")]
    assert len(said) == 1 and "ink" in said[0]  # the inks' colours give the segmentation its ground truth


def test_red_is_the_pictures_first_digit_by_its_labels_or_its_red_ink():
    from capsviz.analysis.two_digits import from_two_colours
    from capsviz.ui.two_digit_input import Picture
    from capsviz.ui.two_digits import in_picture_order

    model, _ = load_checkpoint(PRETRAINED_DIR / "capsnet_multimnist.safetensors")
    x = torch.zeros(1, 36, 36)

    def order(named, picture, iters=3):
        return in_picture_order(named, picture, separate(model, picture.x, named, iters))[0]

    assert order((9, 7), Picture(x, (7, 9))) == (7, 9)
    assert order((9, 4), Picture(x, (7, 9))) == (9, 4)  # the picture's digit first
    assert order((9, 7), Picture(x)) == (9, 7)  # nothing to go by: longest first
    one, zero = (np.asarray(draw_digit(d).convert("L")) for d in (1, 0))
    drawn, singles = from_two_colours(np.stack([one, np.zeros_like(one), zero], axis=-1))  # 1 red, 0 blue
    named = read(model, drawn, 3).named
    assert set(named) == {0, 1}  # the shipped CapsNet reads both (a guard on the case, not on the order)
    assert order(named, Picture(drawn, None, singles)) == (1, 0)
    seen = separate(model, drawn, named, 3)
    _, reordered = in_picture_order(named, Picture(drawn, None, singles), seen)
    assert np.array_equal(
        reordered.reconstructions, seen.reconstructions[::-1] if named == (0, 1) else seen.reconstructions
    )
