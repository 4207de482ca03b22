"""The Claims lab tab through Streamlit's AppTest: with and without a CNN, sliders, the sweep, the table.

The CNN here is a small untrained one saved in a tmp dir and named by $CAPSVIZ_BASELINE (never a
file of runs/); the robustness report is one the test writes, or none ($CAPSVIZ_ROBUSTNESS).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("streamlit")

from app_pages import array, draw, figure, heatmap, open_tab, start  # noqa: E402

from capsviz.analysis import lab, robustness  # noqa: E402
from capsviz.checkpoint import save_checkpoint  # noqa: E402
from capsviz.cnn import CNN  # noqa: E402
from capsviz.figures.viz_lab import CAPSNET_NAME, CNN_NAME  # noqa: E402
from capsviz.model import CapsNet, CapsNetConfig  # noqa: E402
from capsviz.ui import state  # noqa: E402
from capsviz.ui.inputs import SAMPLE  # noqa: E402
from capsviz.ui.text import plain  # noqa: E402

from conftest import TINY_CNN  # noqa: E402

LAB = "Claims lab"


@pytest.fixture
def lab_env(app_env, monkeypatch, tmp_path):
    torch.manual_seed(0)
    cnn = tmp_path / "cnn.safetensors"
    save_checkpoint(cnn, CNN(TINY_CNN), {"epochs": 0})
    monkeypatch.setenv(lab.BASELINE_ENV, str(cnn))
    monkeypatch.setenv(lab.ROBUSTNESS_ENV, str(tmp_path / "claims" / "robustness.json"))  # not measured yet
    return tmp_path


def pair(app) -> tuple[np.ndarray, np.ndarray]:
    """The lab's input and transformed images, shown side by side in one chart with a one-pixel gap."""
    z = heatmap(app, "fig_lab_images")  # (28, 57)
    assert z.shape == (28, 57) and np.isnan(z[:, 28]).all()
    return z[:, :28], z[:, 29:]


def scores(app) -> dict[str, np.ndarray]:
    return {trace["name"]: array(trace["y"]) for trace in figure(app, "fig_lab_scores")["data"]}


def marker(app) -> dict:
    return next(t for t in figure(app, "fig_lab_sweep")["data"] if t["name"] == "current setting")


def test_the_lab_shows_both_models_on_the_explore_tabs_input(lab_env):
    app = draw(start(), 4)
    explored = heatmap(app, "fig_input")
    open_tab(app, LAB)
    shown, moved = pair(app)
    assert np.allclose(shown, explored)  # the same input, no picker of its own
    assert np.allclose(moved, explored, atol=1e-5)  # the identity transform
    both = scores(app)
    assert set(both) == {CAPSNET_NAME, CNN_NAME} and all(len(s) == 10 for s in both.values())
    assert both[CNN_NAME].sum() == pytest.approx(1.0, abs=1e-4)
    assert any("CapsNet" in m.value and "CNN:" in m.value for m in app.markdown)
    assert not app.info or not any("CNN baseline" in i.value for i in app.info)
    figure(app, "fig_lab_poses"), figure(app, "fig_lab_strip")
    assert any("ms on the server" in c.value for c in app.caption)


def test_without_a_cnn_the_lab_says_so_and_shows_capsnet(lab_env, monkeypatch):
    monkeypatch.setenv(lab.BASELINE_ENV, "none")
    app = start(LAB)
    assert any("No CNN baseline shipped: only CapsNet is shown" in i.value for i in app.info)
    assert set(scores(app)) == {CAPSNET_NAME}
    assert any("MNIST test image #0" in c.value for c in app.caption)  # nothing drawn yet: a test image
    monkeypatch.setenv(lab.BASELINE_ENV, str(lab_env / "capsnet.safetensors"))  # a checkpoint, not a CNN
    save_checkpoint(lab_env / "capsnet.safetensors", CapsNet(CapsNetConfig(conv_channels=16, primary_types=4)))
    app.run()
    assert not app.exception
    assert any("not a usable CNN baseline" in i.value and "capsnet model" in i.value for i in app.info)
    monkeypatch.setenv(lab.BASELINE_ENV, str(lab_env / "missing.safetensors"))
    app.run()
    assert not app.exception and any("could not be loaded" in i.value for i in app.info)


def test_a_slider_moves_the_input_and_both_predictions(lab_env):
    app = start(LAB)
    before_image, before = pair(app)[1], scores(app)
    app.slider(key=state.LAB_PARAM.format("rotation")).set_value(45.0).run()
    assert not app.exception
    after_image, after = pair(app)[1], scores(app)
    shown = torch.from_numpy(pair(app)[0]).float()[None]  # (1, 28, 28)
    expected = lab.transformed(shown, [lab.Transform(rotation=45.0)])[0, 0].numpy()
    assert np.allclose(after_image, expected, atol=1e-5) and not np.allclose(after_image, before_image, atol=0.05)
    for name in (CAPSNET_NAME, CNN_NAME):
        assert not np.allclose(after[name], before[name], atol=1e-6), name
    app.button(key=state.LAB_RESET).click().run()
    assert app.slider(key=state.LAB_PARAM.format("rotation")).value == 0.0
    assert np.allclose(pair(app)[1], before_image, atol=1e-6)


def test_the_sweep_marks_the_current_setting_on_its_curve(lab_env):
    app = start(LAB)
    app.selectbox(key=state.LAB_SWEEP_OF).set_value("shear").run()
    app.slider(key=state.LAB_PARAM.format("shear")).set_value(0.3).run()
    assert not app.exception
    digit = app.selectbox(key=state.LAB_DIGIT).value
    spot = marker(app)
    assert array(spot["x"]).tolist() == [0.3, 0.3]
    now = scores(app)
    assert array(spot["y"]) == pytest.approx([now[CAPSNET_NAME][digit], now[CNN_NAME][digit]], abs=1e-5)
    lines = {t["name"]: t for t in figure(app, "fig_lab_sweep")["data"] if t["name"] != "current setting"}
    at = lab.SWEEPS["shear"].index(0.3)
    for k, name in enumerate((CAPSNET_NAME, CNN_NAME)):  # the sweep's point at 0.3 is the single-image reading
        assert array(lines[name]["x"])[at] == pytest.approx(0.3)
        assert array(lines[name]["y"])[at] == pytest.approx(array(spot["y"])[k], abs=1e-5)
    assert figure(app, "fig_lab_sweep")["layout"]["shapes"][0]["x0"] == pytest.approx(0.3)
    app.selectbox(key=state.LAB_DIGIT).set_value((digit + 1) % 10).run()
    assert "digit" in figure(app, "fig_lab_sweep")["layout"]["title"]["text"]
    assert str((digit + 1) % 10) in figure(app, "fig_lab_poses")["layout"]["title"]["text"]
    poses = figure(app, "fig_lab_poses")
    named = next(c.value for c in app.caption if "moves the most" in c.value).split("Dimension ")[1].split(" ")[0]
    coloured = [line["name"] for line in poses["data"] if line["line"]["color"] != poses["data"][0]["line"]["color"]]
    assert coloured == [f"dim {named}"] and poses["layout"]["annotations"][0]["text"] == f"dim {named}"


def test_the_robustness_table_shows_its_date_or_says_it_is_not_measured(lab_env):
    app = start(LAB)
    assert any("Not measured yet" in i.value and "python -m capsviz robustness" in i.value for i in app.info)
    assert any("79%" in m.value and "66%" in m.value for m in app.markdown)
    path = lab_env / "claims" / "robustness.json"
    path.parent.mkdir()
    entry = {"name": "capsnet_mnist", "kind": "capsnet", "params": 8215568, "routing_iters": 3}
    entry |= {"checkpoint": "pretrained/capsnet_mnist.safetensors", "mnist": 0.9951, "affine": 0.8123}
    result = {"format": robustness.FORMAT, "date": "2026-11-23T06:30:00+00:00", "hardware": "cpu; x86_64"}
    result |= {"command": "python -m capsviz robustness --out-dir docs/claims", "test_images": 10000, "seed": 0}
    path.write_text(json.dumps(result | {"models": [entry]}))
    app.run()
    assert not app.exception
    table = app.table[0].value
    assert list(table["model"]) == [plain("capsnet_mnist")] and list(table["affNIST-like"]) == ["81.23%"]
    entry["by_routing"] = {"1": {"mnist": 0.99, "affine": 0.75}, "3": {"mnist": 0.9951, "affine": 0.8123}}
    path.write_text(json.dumps(result | {"models": [entry]}))
    app.run()
    table = app.table[0].value  # a CapsNet's row per routing count: what routing adds
    assert list(table["routing iterations"]) == ["1", "3 (trained with)"]
    assert list(table["affNIST-like"]) == ["75.00%", "81.23%"]
    date = plain("2026-11-23T06:30:00+00:00")  # the report's strings are shown as typed: Markdown escaped
    assert any(date in c.value and "10000 MNIST test images" in c.value for c in app.caption)
    assert not any("Measured gap" in m.value for m in app.markdown)  # no per-image record, no CNN: no gap claimed

    caps_hits, cnn_hits = np.arange(10000) < 8123, np.arange(10000) < 8000
    cnn_hits[9000:9050] = True  # right only by the CNN on 50 images, only by CapsNet on 123
    entry["affine_correct"] = robustness.pack(caps_hits)
    baseline = {"name": "cnn_mnist", "kind": "cnn", "params": 1, "checkpoint": str(lab_env / "cnn.safetensors")}
    baseline |= {"mnist": 0.99, "affine": 0.805, "affine_correct": robustness.pack(cnn_hits)}
    path.write_text(json.dumps(result | {"models": [entry, baseline]}))
    app.run()
    gap = robustness.paired(caps_hits, cnn_hits)
    line = next(m.value for m in app.markdown if "Measured gap" in m.value)
    assert f"{gap['points']:+.2f}" == "+0.73" and "**+0.73 points**" in line
    assert f"81.23% − {plain('cnn_mnist')} 80.50%" in line
    assert f"standard error {gap['standard_error']:.2f}" in line and "123 images right only by CapsNet" in line
    assert f"{gap['points'] / gap['standard_error']:.1f} standard errors from zero" in line
    assert not any("Routing iterations at reading" in m.value for m in app.markdown)  # r=1 has no record
    entry["by_routing"]["1"]["affine_correct"] = robustness.pack(np.arange(10000) < 7500)
    path.write_text(json.dumps(result | {"models": [entry, baseline]}))
    app.run()
    routing = robustness.paired(np.arange(10000) < 7500, caps_hits)
    line = next(m.value for m in app.markdown if "Routing iterations at reading" in m.value)
    compared = f"{plain('capsnet_mnist r=1')} − {plain('capsnet_mnist r=3')}"
    assert f"{compared}: **{routing['points']:+.2f} points**" in line and "-6.23" in line
    baseline["affine_correct"] = robustness.pack(caps_hits)
    path.write_text(json.dumps(result | {"models": [entry, baseline]}))
    app.run()
    assert "+0.00 points" in next(m.value for m in app.markdown if "Measured gap" in m.value)
    assert "not distinguishable from no difference" in next(m.value for m in app.markdown if "Measured gap" in m.value)
    cnn_hits = caps_hits.copy()
    cnn_hits[:10], cnn_hits[9000:9020] = False, True  # right only by CapsNet on 10 images, only by the CNN on 20
    baseline["affine_correct"] = robustness.pack(cnn_hits)
    path.write_text(json.dumps(result | {"models": [entry, baseline]}))
    app.run()
    gap = robustness.paired(caps_hits, cnn_hits)
    assert 1 < abs(gap["standard_errors"]) < 2 and gap["standard_error"] > 0  # between one and two: still noise
    line = next(m.value for m in app.markdown if "Measured gap" in m.value)
    assert f"**{gap['points']:+.2f} points**" in line and "not distinguishable from no difference" in line
    baseline["affine_correct"] = "not bits"
    path.write_text(json.dumps(result | {"models": [entry, baseline]}))
    app.run()
    assert not app.exception and not any("Measured gap" in m.value for m in app.markdown)


def test_explore_keeps_its_widgets_through_a_detour_to_the_lab(lab_env):
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    index = app.session_state[state.SAMPLE_INDEX]
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()
    open_tab(app, LAB)
    assert any("2 routing iterations" in m.value for m in app.markdown)  # the lab reads Explore's setting
    app.slider(key=state.LAB_PARAM.format("scale_x")).set_value(1.2).run()
    open_tab(app, "Explore")
    assert app.radio(key=state.INPUT_SOURCE).value == SAMPLE and app.session_state[state.SAMPLE_INDEX] == index
    assert app.slider(key=state.ROUTING_ITERS).value == 2
    open_tab(app, LAB)
    assert app.slider(key=state.LAB_PARAM.format("scale_x")).value == 1.2  # and the lab keeps its own


def test_the_sweep_summary_says_when_the_score_is_not_above_half_in_one_stretch():
    from capsviz.ui.lab import _sweep_summary

    values = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    scores = np.zeros((5, 10), np.float32)
    scores[:, 3] = [0.9, 0.2, 0.9, 0.9, 0.1]  # above 0.5 at -2 and at 0..1: two stretches
    along = lab.Reading(images=np.zeros((5, 28, 28)), capsnet=scores, poses=np.zeros((5, 10, 16)), cnn=None)
    assert "above 0.5 at 3 of 5 points, not in one stretch" in _sweep_summary(along, 3, values)
    scores[:, 3] = [0.1, 0.9, 0.9, 0.9, 0.1]
    assert "above 0.5 from -1 to 1" in _sweep_summary(along, 3, values)
    scores[:, 3] = [0.1, 0.9, 0.1, 0.1, 0.1]  # one point is not a range "from -1 to -1"
    assert "above 0.5 only at -1)" in _sweep_summary(along, 3, values)
