"""The app's flows through Streamlit's AppTest: the real script, in-process, no browser.

The canvas cannot be driven here (it is a browser component), so drawings are injected
the way the component reports them: under its key, as {"drawing": {"raw", "data"}}.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("streamlit")
from app_pages import (  # noqa: E402
    array,
    component_data,
    draw,
    figure,
    heatmap,
    open_tab,
    png_bytes,
    report,
    start,
    start_with,
)
from streamlit.testing.v1 import AppTest  # noqa: E402

from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint, read_card, save_checkpoint  # noqa: E402
from capsviz.model import CapsNet, CapsNetConfig  # noqa: E402
from capsviz.preprocess import to_mnist  # noqa: E402
from capsviz.ui import state  # noqa: E402
from capsviz.ui.card import plain  # noqa: E402
from capsviz.ui.inputs import BY_CLASS, MISCLASSIFIED, RANDOM, SAMPLE, UPLOAD  # noqa: E402
from capsviz.ui.resources import OpenRuns, run_checkpoints  # noqa: E402
from capsviz.ui.two_digit_input import EXPLORED  # noqa: E402

from conftest import routing_report  # noqa: E402
from drawings import draw_digit  # noqa: E402


def expected_prediction(digit: int) -> int:
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    with torch.no_grad():
        return int(model(to_mnist(draw_digit(digit))[None]).lengths.argmax())


def test_starts_with_the_shipped_model_and_a_draw_a_digit_state(app_env):
    app = start()
    assert "capsviz" in app.title[0].value
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value.startswith("shipped")
    assert any("MNIST test accuracy" in md.value for md in app.sidebar.markdown)
    assert any("Draw a digit" in info.value for info in app.info)
    assert app.slider(key=state.ROUTING_ITERS).value == 3


def test_the_sidebar_plots_the_shipped_cards_test_error_per_epoch_when_opened(app_env):
    app = start()
    assert not [c for c in app.get("plotly_chart") if "fig_card_curve" in c.proto.id]  # built only when opened
    app.session_state[state.CARD_CURVE_OPEN] = True  # what opening the expander in the browser reports
    app.run()
    card = read_card(SHIPPED_CHECKPOINT)  # the card embedded in the weights, which the sidebar reads
    curve, shipped = figure(app, "fig_card_curve")["data"]
    expected = [100 * (1 - a) for a in card["test_accuracy_per_epoch"]]
    assert array(curve["y"]) == pytest.approx(expected) and len(expected) == card["epochs"]
    assert array(shipped["y"]) == pytest.approx(expected[-1:])
    assert any(f"{expected[-1]:.2f}%" in c.value for c in app.sidebar.caption)
    first = card["epochs"] - card["epochs_this_run"] + 1  # the shipped model continued earlier runs
    assert figure(app, "fig_card_curve")["layout"]["shapes"][1]["x0"] == first - 0.5
    assert any(
        f"these weights: epochs {first}-{card['epochs']} (learning rate cosine" in c.value for c in app.sidebar.caption
    )
    assert any(c.value == f"The card's note: {plain(card['note'], len(card['note']))}" for c in app.sidebar.caption)


def test_a_drawing_is_classified_with_lengths_routing_and_sixteen_sliders(app_env):
    app = draw(start(), 3)
    assert app.metric[0].value == str(expected_prediction(3))
    lengths = array(figure(app, "fig_lengths")["data"][0]["y"])
    assert len(lengths) == 10
    for key in ("fig_input", "fig_recon", "fig_overlay"):  # the matrix: only when opened
        figure(app, key)
    assert len(tiles_data(app)["values"]) == 1152
    sliders = [app.slider(key=state.POSE_DIM.format(d)) for d in range(16)]
    assert all(s.value == 0.0 for s in sliders)
    assert not [c for c in app.get("plotly_chart") if "fig_pose" in c.proto.id]  # decoded only when open
    figure(open_server_pose(app), "fig_pose")


def open_server_pose(app: AppTest) -> AppTest:
    """What opening "The same pose decoded on the server" in the browser reports."""
    app.session_state[state.POSE_SERVER_OPEN] = True
    return app.run()


def test_blank_canvas_is_a_friendly_state_not_an_error(app_env):
    app = start()
    report(app, draw_digit(1).point(lambda v: 0))
    assert not app.exception and not app.error
    assert any("empty" in info.value for info in app.info)


def test_slider_changes_the_reconstruction_and_reset_restores_it(app_env):
    app = open_server_pose(draw(start(), 5))
    before = heatmap(app, "fig_pose")
    app.slider(key=state.POSE_DIM.format(4)).set_value(0.2).run()
    after = heatmap(app, "fig_pose")
    assert np.abs(after - before).max() > 1e-3
    app.button(key=state.POSE_RESET).click().run()
    assert app.slider(key=state.POSE_DIM.format(4)).value == 0.0
    assert np.allclose(heatmap(app, "fig_pose"), before, atol=1e-6)


def test_a_new_drawing_resets_the_sliders(app_env):
    app = draw(start(), 5)
    app.slider(key=state.POSE_DIM.format(0)).set_value(0.1).run()
    draw(app, 7)
    assert app.slider(key=state.POSE_DIM.format(0)).value == 0.0


def test_routing_iterations_change_the_trace(app_env):
    app = draw(start(), 2)
    assert app.slider(key=state.ROUTING_ITERATION).max == 3
    app.slider(key=state.ROUTING_ITERS).set_value(5).run()
    assert not app.exception
    iteration = app.slider(key=state.ROUTING_ITERATION)
    assert iteration.max == 5 and iteration.value == 5
    tiles = tiles_data(app)
    first = np.array(tiles["values"])
    assert (tiles["low"], tiles["high"]) == (0.0, pytest.approx(0.2))  # one fixed range, centred on 0.1
    assert "iteration 5" in tiles["title"]
    app.slider(key=state.ROUTING_ITERATION).set_value(1).run()
    uniform = np.array(tiles_data(app)["values"])
    assert np.allclose(uniform, 0.1, atol=1e-5)  # iteration 1: couplings all 0.1
    assert np.abs(first - 0.1).max() > 1e-3  # later iterations have moved away from uniform
    assert tiles_data(app)["high"] == pytest.approx(0.2)  # the same range at iteration 1
    overlay = figure(app, "fig_overlay")
    assert "36/36 tied" in overlay["layout"]["title"]["text"]  # ties are ties, no argmax
    assert all(t == "no winner (tie)" for t in overlay["data"][1]["text"])


def measured_line(app: AppTest) -> str:
    lines = [md.value for md in app.markdown if md.value.startswith("**Measured")]
    assert len(lines) == 1, lines
    return lines[0]


def test_the_two_iteration_controls_say_how_they_differ(app_env):
    """'Routing iterations at inference' and 'Iteration' sat near each other with no hint of the difference."""
    app = draw(start(), 3)
    shown, run = app.slider(key=state.ROUTING_ITERATION), app.slider(key=state.ROUTING_ITERS)
    assert shown.label == "Iteration shown"
    assert "Routing iterations at inference" in shown.help and "prediction does not change" in shown.help
    assert "Iteration shown" in run.help and "every prediction" in run.help


def test_one_routing_iteration_says_what_is_shown_where_the_slider_was(app_env):
    """With a single iteration there is nothing to step through: a line in place of the slider, no gap."""
    app = draw(start(), 3)
    app.slider(key=state.ROUTING_ITERS).set_value(1).run()
    assert not app.exception
    assert [s.key for s in app.slider].count(state.ROUTING_ITERATION) == 0
    assert any("only one the prediction ran" in c.value for c in app.caption)
    assert not any(b.key == state.ROUTING_PLAY for b in app.button)


def test_each_routing_view_carries_its_measured_summary(app_env):
    app = draw(start(), 3)
    assert "routing moved" in measured_line(app) and "capsule" in measured_line(app)
    app.radio(key=state.ROUTING_VIEW).set_value("Votes and agreement").run()
    assert not app.exception
    assert "votes point the same way" in measured_line(app)
    votes = figure(app, "fig_votes")
    assert len(array(votes["data"][0]["x"])) == 1152
    assert (votes["data"][0]["marker"]["cmin"], votes["data"][0]["marker"]["cmax"]) == (0.0, pytest.approx(0.2))
    axes = votes["layout"]["xaxis"]["range"], votes["layout"]["yaxis"]["range"]
    app.slider(key=state.ROUTING_ITERATION).set_value(1).run()
    stepped = figure(app, "fig_votes")
    assert (stepped["layout"]["xaxis"]["range"], stepped["layout"]["yaxis"]["range"]) == axes  # fixed axes
    assert len(figure(app, "fig_agreement")["data"]) == 3 + 1  # one line per iteration, and |u_i|
    app.radio(key=state.ROUTING_VIEW).set_value("What routing adds").run()
    assert not app.exception
    assert "after every count from 1 to 5" in measured_line(app) or "changes with the count" in measured_line(app)
    lines = figure(app, "fig_iterations")["data"]
    assert len(lines) == 10 and all(len(array(t["y"])) == 5 for t in lines)
    # the shipped model's measurement (pretrained/capsnet_mnist.routing.json) matches its bytes: the table shows
    assert not any("Not measured" in i.value for i in app.info)
    shipped = json.loads(SHIPPED_CHECKPOINT.with_suffix(".routing.json").read_text())
    assert any(f"{shipped['accuracy']['3']:.2%}" in str(t.value) for t in app.dataframe)


def test_inspector_shows_a_capsule_its_field_and_procedure_1(app_env):
    app = draw(start(), 3)
    assert not any(md.value.startswith("#### Primary capsule") for md in app.markdown)
    app.number_input(key=state.INSPECT_CAPSULE).set_value(36 * 4 + 6 * 2 + 3).run()
    assert not app.exception
    assert any(md.value.startswith("#### Primary capsule 159: type 4, row 2, col 3") for md in app.markdown)
    (rect,) = figure(app, "fig_field")["layout"]["shapes"]
    assert (rect["x0"], rect["y0"], rect["x1"] - rect["x0"]) == (5.5, 3.5, 17)  # cols 6..22, rows 4..20
    assert len(array(figure(app, "fig_capsule")["data"][0]["y"])) == 8
    assert any("Procedure 1" in md.value for md in app.markdown)
    assert len(app.latex) == 1
    assert tiles_data(app)["selected"] == 159  # outlined in the tiles
    from page_messages import sends_widgets

    sends_widgets(app, {state.INSPECT_CAPSULE: ("int_value", 160)})  # as a browser sends a whole number
    assert any(md.value.startswith("#### Primary capsule 160") for md in app.markdown)
    app.number_input(key=state.INSPECT_CAPSULE).set_value(None).run()  # emptied: no capsule inspected
    assert app.number_input(key=state.INSPECT_CAPSULE).value is None
    assert not any(md.value.startswith("#### Primary capsule") for md in app.markdown)


def test_routing_accuracy_table_shows_only_for_the_checkpoint_it_measured(app_env):
    from capsviz.analysis import routing_accuracy

    run = app_env / "runs" / "20260101-000000-abcdef" / "last.safetensors"
    torch.manual_seed(0)
    save_checkpoint(run, CapsNet(CapsNetConfig()), {"test_accuracy": 0.5, "epochs": 1, "train_images": 96})
    routing_accuracy.write(routing_report(run), routing_accuracy.results_path(run))
    app = start()
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value("run: 20260101-000000-abcdef").run()
    draw(app, 3)
    app.radio(key=state.ROUTING_VIEW).set_value("What routing adds").run()
    assert not app.exception
    (table,) = [d for d in app.dataframe if "routing iterations" in d.value.columns]
    assert list(table.value["test accuracy"]) == ["10.00%", "20.00%", "30.00%", "40.00%", "50.00%"]
    assert any(plain("--limit 40") in c.value and plain("2026-01-01") in c.value for c in app.caption)  # as typed


def test_mnist_samples_random_by_class_and_misclassified(app_env):
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    assert not app.exception
    assert any("MNIST test image #" in c.value for c in app.caption)
    app.radio(key=state.SAMPLE_MODE).set_value("by class").run()
    app.selectbox(key=state.SAMPLE_DIGIT).set_value(7).run()  # choosing a class picks one at once
    assert any("labelled **7**" in c.value for c in app.caption)
    app.button(key=state.SAMPLE_NEXT).click().run()
    assert any("labelled **7**" in c.value for c in app.caption)
    app.radio(key=state.SAMPLE_MODE).set_value("misclassified").run()
    assert not app.exception
    assert any("(**wrong**)" in md.value for md in app.markdown)


def test_upload_of_good_and_bad_files(app_env):
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    photo = draw_digit(4).convert("L").point(lambda v: 255 - v)  # dark ink on white paper
    app.file_uploader(key=state.UPLOAD).set_value(("four.png", png_bytes(photo), "image/png")).run()
    assert not app.exception and not app.error
    assert app.metric[0].value == str(expected_prediction(4))
    app.file_uploader(key=state.UPLOAD).set_value(("junk.png", b"not an image", "image/png")).run()
    assert not app.exception
    assert any("Could not read" in e.value for e in app.error)


def test_checkpoint_switching_and_rejecting_a_bad_upload(app_env):
    run = app_env / "runs" / "20260101-000000-abcdef" / "last.safetensors"
    torch.manual_seed(0)
    save_checkpoint(run, CapsNet(CapsNetConfig()), {"test_accuracy": 0.5, "epochs": 1, "train_images": 96})
    app = start()
    choice = app.selectbox(key=state.CHECKPOINT_CHOICE)
    assert "run: 20260101-000000-abcdef" in choice.options
    choice.set_value("run: 20260101-000000-abcdef").run()
    assert not app.exception
    assert any("50.00%" in md.value for md in app.sidebar.markdown)
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value("upload a checkpoint...").run()
    app.file_uploader(key=state.CHECKPOINT_UPLOAD).set_value(
        ("bad.safetensors", b"garbage", "application/octet-stream")
    )
    app.run()
    assert not app.exception
    assert any("Rejected" in e.value and "not a safetensors file" in e.value for e in app.sidebar.error)
    assert any("shipped" in md.value for md in app.sidebar.markdown)  # still usable
    other = app_env / "five-classes.safetensors"
    save_checkpoint(other, CapsNet(CapsNetConfig(num_classes=5, conv_channels=16, primary_types=4)))
    app.file_uploader(key=state.CHECKPOINT_UPLOAD).set_value(
        ("five.safetensors", other.read_bytes(), "application/octet-stream")
    )
    app.run()
    assert not app.exception
    assert any("5 classes" in e.value and "MNIST needs 10" in e.value for e in app.sidebar.error)


def test_a_chosen_run_that_was_pruned_says_so(app_env):
    """Found by a review: another session's training prunes old runs; this one fell back without a word."""
    run = app_env / "runs" / "20260101-000000-abcdef" / "last.safetensors"
    torch.manual_seed(0)
    save_checkpoint(run, CapsNet(CapsNetConfig()), {"test_accuracy": 0.5})
    app = start()
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value("run: 20260101-000000-abcdef").run()
    run.unlink()
    run.parent.rmdir()
    app.run()
    assert not app.exception
    gone = plain("20260101-000000-abcdef")  # as typed: markdown escaped
    assert any(f"{gone} is no longer in the runs folder" in w.value for w in app.sidebar.warning)
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value == "shipped (pretrained)"


def test_a_share_link_to_a_run_that_never_existed_shows_the_shipped_model_without_a_story(app_env):
    app = start_with({"model": "run:[click](https://example.invalid) never existed"})  # what share.restore reads
    assert not app.exception and not app.sidebar.warning
    assert app.sidebar.markdown[0].value.startswith("**shipped \\(pretrained\\)**")


def test_the_runs_list_skips_a_file_that_vanishes_while_it_is_listed(app_env, monkeypatch):
    """Found by a review: another session's prune between the listing and the stat raised FileNotFoundError."""
    kept, vanishing = (app_env / "runs" / name / "last.safetensors" for name in ("20260101-000000-kept", "vanish"))
    for path in (kept, vanishing):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    real_stat = Path.stat

    def stat(path, *args, **kwargs):
        if path == vanishing:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert run_checkpoints() == [kept]


def test_a_crafted_card_shows_question_marks_not_a_crash_or_markup(app_env):
    """Found by a review: a huge JSON integer crashed the page; a bool showed as 100%; strings went in whole."""
    run = app_env / "runs" / "20260101-000000-crafted" / "last.safetensors"
    torch.manual_seed(0)
    card = {
        "test_accuracy": True,
        "epochs": 10**400,
        "wall_seconds": 10**400,
        "device": "![x](https://example.invalid/t.png)" + "A" * 1_000_000,
        "test_accuracy_per_epoch": [0.5, 0.6, 0.7],
        "epochs_this_run": 1,
        "lr_schedule": "cosine",
        "lr": 10**400,
        "note": "",
    }
    save_checkpoint(run, CapsNet(CapsNetConfig()), card)
    app = start()
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value("run: 20260101-000000-crafted").run()
    app.session_state[state.CARD_CURVE_OPEN] = True
    app.run()
    assert not app.exception
    text = " ".join(md.value for md in app.sidebar.markdown)
    assert "test accuracy: not measured" in text and "? epochs" in text and "training time" not in text
    assert "](" not in text and len(text) < 1_000
    caption = " ".join(c.value for c in app.sidebar.caption)
    assert "The run that wrote these weights: epoch 3." in caption and "epochs 1-2, left of the dotted line." in caption
    assert "The card's note" not in caption  # an empty note shows nothing


def start_small_training(epochs: int):
    """Start an in-app run on 100 images (the synthetic set), batch 32; returns (app, job)."""
    app = start("Train")
    app.radio(key=state.TRAIN_PRESET).set_value("Custom").run()
    app.number_input(key=state.TRAIN_EPOCHS).set_value(epochs)
    app.selectbox(key=state.TRAIN_BATCH).set_value(32)
    app.number_input(key=state.TRAIN_LIMIT).set_value(100)
    app.button(key=state.TRAIN_START).click().run()
    assert not app.exception
    return app, app.session_state[state.TRAIN_JOB]


def test_a_run_another_session_shows_survives_the_prune_a_training_starts(app_env, monkeypatch):
    """Found by a review: starting a training deleted old app runs even while another session showed one."""
    monkeypatch.setenv("CAPSVIZ_KEEP_RUNS", "1")  # the new run only: every older app run may go
    shown, other = (app_env / "runs" / name for name in ("20260101-000000-abcdef", "20260102-000000-abcdef"))
    torch.manual_seed(0)
    for run in (shown, other):
        save_checkpoint(run / "last.safetensors", CapsNet(CapsNetConfig()), {"test_accuracy": 0.5})
    viewer = start()
    viewer.selectbox(key=state.CHECKPOINT_CHOICE).set_value(f"run: {shown.name}").run()
    _, job = start_small_training(epochs=1)  # another session
    job.thread.join(timeout=300)
    assert shown.is_dir() and not other.exists()
    viewer.run()
    assert not viewer.exception and viewer.selectbox(key=state.CHECKPOINT_CHOICE).value == f"run: {shown.name}"


def test_a_finished_run_whose_folder_was_pruned_says_so(app_env):
    app, job = start_small_training(epochs=1)
    job.thread.join(timeout=300)
    assert job.status == "finished", job.error
    shutil.rmtree(job.out_dir)  # what another session's prune does once this session shows another model
    app.run()
    assert not app.exception and not app.success
    assert any("checkpoint is gone" in w.value for w in app.warning)


def test_open_runs_forget_the_sessions_that_closed():
    runs = OpenRuns()
    alive = {"a": True, "b": True}
    runs.show("a", Path("runs/x"), lambda: alive["a"])
    runs.show("b", Path("runs/y"), lambda: alive["b"])
    assert runs.folders() == {Path("runs/x"), Path("runs/y")}
    alive["b"] = False
    runs.show("a", None, lambda: True)  # a switched to the shipped model
    assert runs.folders() == set()


def test_train_in_the_app_then_switch_to_the_new_model(app_env):
    app, job = start_small_training(epochs=1)
    job.thread.join(timeout=300)
    assert job.status == "finished", job.error
    app.run()
    assert not app.exception
    said = next(s.value for s in app.success if "saved to" in s.value)
    assert f"Test accuracy after the last epoch: **{job.epochs[0].test_accuracy:.2%}**" in said  # the lesson's result
    if job.epochs[0].test_accuracy < 0.5:  # a weak model is only used once the user says so
        assert app.button(key=state.TRAIN_USE).disabled
        assert any("chance is 10%" in w.value for w in app.warning)
        app.checkbox(key=state.TRAIN_USE_ANYWAY).check().run()
    app.button(key=state.TRAIN_USE).click().run()
    assert not app.exception
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value == f"run: {job.out_dir.name}"
    assert len(job.epochs) == 1  # the model now in use is the run the tab showed, with its accuracy
    assert read_card(job.out_dir / "last.safetensors")["test_accuracy"] == job.epochs[0].test_accuracy


def test_training_can_be_cancelled_and_keeps_nothing_half_written(app_env):
    app, job = start_small_training(epochs=50)
    assert app.button(key=state.TRAIN_START).disabled and not app.button(key=state.TRAIN_CANCEL).disabled
    app.button(key=state.TRAIN_CANCEL).click().run()
    job.thread.join(timeout=300)
    assert job.status == "cancelled" and len(job.epochs) < 50
    app.run()
    assert not app.exception and not app.button(key=state.TRAIN_START).disabled
    checkpoint = job.out_dir / "last.safetensors"
    assert not list(job.out_dir.glob("*.tmp")) and not list(job.out_dir.glob(".*.tmp"))  # no half-written file
    if job.epochs:  # what was saved is whole: the last complete epoch, and it loads
        _, card = load_checkpoint(checkpoint)
        assert card["epochs"] == len(job.epochs)
    else:  # cancelled before the first epoch: nothing saved, and it says so
        assert not checkpoint.exists()
        assert any("nothing was saved" in w.value for w in app.warning)


def test_training_without_data_says_how_to_fix_it(app_env, monkeypatch):
    monkeypatch.setenv("CAPSVIZ_DATA", str(app_env / "no-data-here"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    app = start("Train")
    app.button(key=state.TRAIN_START).click().run()
    job = app.session_state[state.TRAIN_JOB]
    job.thread.join(timeout=120)
    app.run()
    assert job.status == "failed"
    assert any("MNIST is not in" in e.value and "copy" in e.value for e in app.error)


def test_sessions_share_one_cached_model_and_never_change_it(app_env):
    """Two sessions in one process (as under one server) read the same cached model object."""
    from capsviz.ui.resources import shipped_model

    reference, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    one, two = draw(start(), 3), draw(start(), 8)
    one.slider(key=state.POSE_DIM.format(2)).set_value(0.25).run()
    one.slider(key=state.ROUTING_ITERS).set_value(1).run()
    two.slider(key=state.POSE_DIM.format(5)).set_value(-0.2).run()
    two.run()
    assert two.slider(key=state.POSE_DIM.format(2)).value == 0.0
    assert one.slider(key=state.POSE_DIM.format(5)).value == 0.0
    assert two.slider(key=state.ROUTING_ITERS).value == 3
    cached = shipped_model("cpu").model
    assert cached is shipped_model("cpu").model  # one object for every session
    assert not cached.training
    assert all(not p.requires_grad or p.grad is None for p in cached.parameters())
    for key, value in cached.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


# --- the page as a browser shows it: panels in sync, drawings and expanders kept, clear feedback -


def save_run(app_env, name: str, seed: int) -> str:
    """A randomly initialised checkpoint under the runs folder; returns its sidebar option."""
    torch.manual_seed(seed)
    save_checkpoint(app_env / "runs" / name / "last.safetensors", CapsNet(CapsNetConfig()), {"epochs": 1})
    return f"run: {name}"


def shown_digits(app: AppTest) -> tuple[int, int, int]:
    """(prediction, routing digit, pose digit) as the page shows them."""
    return (
        int(app.metric[0].value),
        app.selectbox(key=state.ROUTING_DIGIT).value,
        app.selectbox(key=state.POSE_CLASS).value,
    )


def test_switching_model_or_routing_iterations_resyncs_every_panel(app_env):
    """The routing and pose panels follow the model and the routing iterations, not only the input."""
    option = save_run(app_env, "20260101-000000-random", seed=1)
    app = draw(start(), 3)
    shipped_prediction = shown_digits(app)[0]
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(option).run()
    random_prediction = shown_digits(app)[0]
    assert random_prediction != shipped_prediction  # the test needs two models that disagree
    assert shown_digits(app) == (random_prediction,) * 3
    app.slider(key=state.POSE_DIM.format(1)).set_value(0.1).run()
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value("shipped (pretrained)").run()
    assert shown_digits(app) == (shipped_prediction,) * 3
    assert app.slider(key=state.POSE_DIM.format(1)).value == 0.0
    assert f"digit {shipped_prediction}" in tiles_data(app)["title"]
    app.selectbox(key=state.ROUTING_DIGIT).set_value((shipped_prediction + 1) % 10).run()
    app.slider(key=state.ROUTING_ITERS).set_value(1).run()
    assert shown_digits(app) == (int(app.metric[0].value),) * 3


def test_canvas_has_visible_undo_and_clear_and_says_so(app_env):
    """Undo and Clear are buttons under the canvas, and the caption names them (no hover-only toolbar)."""
    app = start()
    assert any("Undo and Clear are under it" in c.value for c in app.caption)
    assert not any("toolbar" in c.value for c in app.caption)
    assert app.button(key=state.CANVAS_UNDO).disabled  # nothing drawn yet
    draw(app, 3)
    assert app.metric
    app.button(key=state.CANVAS_CLEAR).click().run()
    assert not app.exception and not app.metric  # cleared at once, before the browser reports the empty canvas
    assert any("Draw a digit" in info.value for info in app.info)


def test_a_report_older_than_the_last_clear_or_undo_is_not_shown(app_env):
    """The page may report a drawing before it has applied a Clear or Undo: that drawing is stale."""
    stroke = {"type": "path", "path": [["M", 60, 40], ["L", 220, 40]], "stroke": "#FFFFFF", "t": 1}
    app = draw(start(), 3, objects=[stroke, {**stroke, "t": 2}])
    app.button(key=state.CANVAS_UNDO).click().run()
    app.button(key=state.CANVAS_UNDO).click().run()  # a double click, before the page reports back
    assert app.session_state[state.CANVAS_MEMORY]["load"]["objects"] == []  # both strokes undone
    app.button(key=state.CANVAS_CLEAR).click().run()
    report(app, draw_digit(3), objects=[stroke], load=0)  # sent before the page applied the Clear
    assert not app.exception and not app.metric and app.session_state[state.CANVAS_MEMORY]["objects"] == []
    draw(app, 4)  # the page caught up: its report counts again
    assert app.metric


@pytest.mark.parametrize(
    "image", [Image.new("RGBA", (5000, 5000)), Image.new("RGBA", (28, 28))], ids=["huge", "not-the-canvas"]
)
def test_a_canvas_report_that_is_not_its_drawing_is_refused_with_a_message(app_env, image):
    app = draw(start(), 3)
    shown = app.metric[0].value
    report(app, image)
    assert not app.exception and any("not a drawing" in w.value for w in app.warning)
    assert app.metric and app.metric[0].value == shown  # the last real drawing stays


def test_a_canvas_report_that_is_not_base64_is_ignored(app_env):
    app = start()
    app.session_state[state.CANVAS] = {"drawing": {"raw": {"objects": []}, "data": "data:image/png;base64,ab!c"}}
    app.run()
    assert not app.exception and not app.metric


def test_the_drawing_survives_a_detour_through_mnist(app_env):
    """Draw -> MNIST -> Draw keeps the drawing."""
    stroke = {"type": "path", "path": [["M", 60, 40], ["L", 220, 40], ["L", 110, 240]], "stroke": "#FFFFFF"}
    app = draw(start(), 7, objects=[stroke])
    drawn = app.metric[0].value
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.INPUT_SOURCE).set_value("Draw").run()
    assert not app.exception
    assert app.metric and app.metric[0].value == drawn
    memory = app.session_state[state.CANVAS_MEMORY]
    assert memory["load"]["objects"] == [stroke]  # the component is told to redraw the strokes


def test_figure4_expander_stays_open_after_clear_and_its_png_is_labelled(app_env):
    """Expanders stay open after Clear; the downloaded Figure 4 labels its rows and columns."""
    app = draw(start(), 5)
    expander = next(e for e in app.expander if "Figure 4" in e.label)
    grid_png = [b for b in app.get("download_button") if b.key == "pose_grid_download"]
    assert not expander.proto.expanded and not grid_png  # computed only when open
    app.session_state[state.POSE_GRID_OPEN] = True  # what opening it in the browser reports
    app.run()
    app.button(key=state.CANVAS_CLEAR).click().run()
    assert not app.metric
    draw(app, 6)
    expander = next(e for e in app.expander if "Figure 4" in e.label)
    assert expander.proto.expanded
    from PIL import Image

    png = next(b for b in app.get("download_button") if b.key == "pose_grid_download").proto
    assert "figure4" in png.label.lower() or "PNG" in png.label
    assert any("rows are dimensions" in c for image in app.get("image") for c in image.captions)
    from capsviz.analysis import perturb

    cached = app.session_state[state.POSE_GRID][1]
    picture = Image.open(io.BytesIO(cached))
    plain = Image.open(io.BytesIO(perturb.grid_to_png(np.zeros((16, 11, 28, 28), np.float32))))
    assert picture.width > plain.width and picture.height > plain.height  # room for the labels
    labels = np.asarray(picture.convert("L"))[: picture.height - plain.height, :]
    assert (labels < 128).sum() > 200  # dark text on the white label band


def test_searching_for_a_mistake_says_what_it_did(app_env):
    """A search of several seconds shows a status saying what it searched."""
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.SAMPLE_MODE).set_value("misclassified").run()
    assert not app.exception
    statuses = [e for e in app.get("status") if "Searched" in e.label]
    assert statuses and "random test images" in statuses[0].label


def test_upload_messages_show_the_picture_and_admit_doubt(app_env):
    """A bad upload is named without an object repr; a good one shows the original picture beside its 28x28."""
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    app.file_uploader(key=state.UPLOAD).set_value(("junk.png", b"not an image", "image/png")).run()
    message = " ".join(e.value for e in app.error)
    assert plain("junk.png") in message and "BytesIO" not in message and "0x" not in message
    photo = draw_digit(4).convert("L").point(lambda v: 255 - v)
    app.file_uploader(key=state.UPLOAD).set_value(("four.png", png_bytes(photo), "image/png")).run()
    assert uploaded_pictures(app) == ["your picture", "what the model sees (28x28)"]
    assert app.metric[0].label == "Prediction"  # the shipped model is sure of this four
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()  # any rerun: the picture stays beside its 28x28
    assert uploaded_pictures(app) == ["your picture", "what the model sees (28x28)"]
    four = app.metric[0].value
    open_tab(app, "Claims lab")  # Streamlit empties the closed tab's uploader; the upload is kept
    open_tab(app, "Explore")
    assert app.metric and app.metric[0].value == four and uploaded_pictures(app)
    assert any("Your last upload, kept" in c.value for c in app.caption)
    app.file_uploader(key=state.UPLOAD).set_value(("seven.png", png_bytes(draw_digit(7)), "image/png")).run()
    assert not any("Your last upload, kept" in c.value for c in app.caption)


def test_a_photo_in_shadow_is_read_and_its_crop_and_threshold_update_the_28x28(app_env):
    """A dark 7 on grey paper with a shadowed edge read "Not sure: 6"; uploads had no crop or threshold."""
    from drawings import drawn_ink, photograph

    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    shaded = Image.fromarray(photograph(drawn_ink(7), "shadow"))
    app.file_uploader(key=state.UPLOAD).set_value(("seven.jpg", png_bytes(shaded), "image/png")).run()
    assert app.metric[0].label == "Prediction" and app.metric[0].value == str(expected_prediction(7))
    pair = np.concatenate([drawn_ink(3), drawn_ink(7)], axis=1)  # a 3 and a 7 side by side, under a gradient
    app.file_uploader(key=state.UPLOAD).set_value(
        ("pair.png", png_bytes(Image.fromarray(photograph(pair, "gradient"))), "image/png")
    ).run()
    assert app.slider(key=state.UPLOAD_CROP_X).value == (0, 100)  # a new picture starts uncropped
    app.slider(key=state.UPLOAD_CROP_X).set_value((0, 50)).run()
    assert app.metric[0].value == str(expected_prediction(3))
    three = shown_input(app)
    app.slider(key=state.UPLOAD_CROP_X).set_value((50, 100)).run()
    assert app.metric[0].value == str(expected_prediction(7)) and not np.array_equal(shown_input(app), three)
    app.slider(key=state.UPLOAD_THRESHOLD).set_value(90).run()
    assert not np.array_equal(shown_input(app), three) and not app.exception
    app.slider(key=state.UPLOAD_CROP_X).set_value((40, 40)).run()
    assert any("The crop is empty" in i.value for i in app.info)
    app.button(key=state.UPLOAD_RESET).click().run()
    assert app.slider(key=state.UPLOAD_CROP_X).value == (0, 100) and app.slider(key=state.UPLOAD_THRESHOLD).value == 0


def shown_input(app: AppTest) -> np.ndarray:
    """The 28x28 the model reads, as the input chart shows it."""
    return heatmap(app, "fig_input")


def uploaded_pictures(app: AppTest) -> list[str]:
    return [
        c for image in app.get("image") for c in image.captions if c in ("your picture", "what the model sees (28x28)")
    ]


def test_a_weak_answer_is_shown_as_not_sure(app_env):
    option = save_run(app_env, "20260101-000000-random", seed=1)
    app = draw(start(), 3)
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(option).run()
    assert app.metric[0].label.startswith("Not sure")
    assert any("No capsule says its digit is there" in w.value for w in app.warning)


def test_two_long_capsules_are_shown_as_two_digits_not_a_plain_prediction(app_env):
    """A 1 drawn over a 2: capsule 2 at 0.77 and capsule 8 at 0.62 said "Prediction 2"."""
    from PIL import ImageChops

    app = start()
    report(app, ImageChops.lighter(draw_digit(1), draw_digit(2)))
    assert app.metric[0].label == "Two digits?" and app.metric[0].value == "2 and 8"
    note = next(w.value for w in app.warning if "the model sees a 2 and an 8" in w.value)
    assert "not a softmax" in note
    drawn = app.session_state[state.LAB_INPUT].x
    app.button(key=state.READ_AS_TWO).click().run()  # in this page: same model, routing count and drawing
    assert app.session_state[state.TABS] == "Two digits" and app.session_state[state.TWO_SOURCE] == EXPLORED
    assert app.session_state[state.LAB_INPUT].x.equal(drawn) and not app.error
    assert app.query_params["iters"] in ("3", ["3"]) and app.query_params["tab"] in ("two", ["two"])
    open_tab(app, "Explore")
    report(app, ImageChops.lighter(draw_digit(3), draw_digit(5)))  # 5 at 0.33, 3 at 0.30: doubt, nearly tied
    assert app.metric[0].label.startswith("Not sure") and any("near-tie margin of 0.05" in w.value for w in app.warning)


def test_phone_friendly_order_and_controls(app_env):
    """The pose sliders run 0, 1, 2, ... (not 0, 4, 8, ... down a phone) and routing iterations sit on the page."""
    app = draw(start(), 2)
    order = [s.key for s in app.slider if s.key and s.key.startswith("pose_dim_")]
    assert order == [state.POSE_DIM.format(d) for d in range(16)]
    assert not [s for s in app.sidebar.slider if s.key == state.ROUTING_ITERS]
    assert app.slider(key=state.ROUTING_ITERS).value == 3


def test_charts_have_a_way_back_from_zoom_and_a_png_button(app_env):
    """An accidental drag-zoom has a way back: double-click resets, and the modebar shows reset and PNG."""
    app = draw(start(), 2)
    for element in app.get("plotly_chart"):
        config = json.loads(element.proto.config)
        assert config.get("doubleClick") == "reset"
        assert "resetScale2d" in config["modeBarButtons"][0] and "toImage" in config["modeBarButtons"][0]


def test_training_tab_starts_from_the_quick_lesson_preset(app_env):
    """The Train tab opens on a preset of minutes on a CPU (the full defaults take 40+ minutes)."""
    app = start("Train")
    assert app.radio(key=state.TRAIN_PRESET).value == "Quick lesson"
    assert app.number_input(key=state.TRAIN_LIMIT).value == 2_000
    assert app.number_input(key=state.TRAIN_EVAL_LIMIT).value == 1_000
    assert app.number_input(key=state.TRAIN_EPOCHS).value == 1 and app.number_input(key=state.TRAIN_EPOCHS).disabled
    app.radio(key=state.TRAIN_PRESET).set_value("One epoch, all images").run()
    assert app.number_input(key=state.TRAIN_LIMIT).value == 60_000
    app.radio(key=state.TRAIN_PRESET).set_value("Custom").run()
    assert not app.number_input(key=state.TRAIN_LIMIT).disabled


def test_a_model_below_a_sane_accuracy_asks_before_it_is_used(app_env):
    """A model below a sane accuracy (8.9%, say) is used only once the user says so."""
    from capsviz.train import EpochEnd, TrainConfig
    from capsviz.ui.training import TrainingJob

    option = save_run(app_env, "20260101-000000-weak", seed=1)
    job = TrainingJob(TrainConfig(epochs=1), 100, app_env / "runs" / "20260101-000000-weak", status="finished")
    job.epochs.append(EpochEnd(1, 1, 0.5, 0.1, 0.089, 1e-3, 1.0, "last.safetensors"))
    job.finished = job.started
    app = start("Train")
    app.session_state[state.TRAIN_JOB] = job
    app.run()
    assert any("8.9%" in w.value and "chance is 10%" in w.value for w in app.warning)
    assert app.button(key=state.TRAIN_USE).disabled
    app.checkbox(key=state.TRAIN_USE_ANYWAY).check().run()
    app.button(key=state.TRAIN_USE).click().run()
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value == option


def test_evaluation_is_its_own_phase_with_an_estimate(app_env):
    from capsviz.train import TrainConfig
    from capsviz.ui.training import TrainingJob, eval_remaining_seconds

    assert eval_remaining_seconds(0, 1000, 3.0) is None
    assert eval_remaining_seconds(250, 1000, 2.0) == pytest.approx(6.0)
    job = TrainingJob(TrainConfig(epochs=1, eval_limit=1000), 2000, app_env / "runs" / "x", status="evaluating")
    job.batches_done = job.batches_total = 63
    job.eval_done, job.eval_total, job.eval_started = 500, 1000, job.started

    class Alive:
        def is_alive(self):
            return True

    job.thread = Alive()
    app = start("Train")
    app.session_state[state.TRAIN_JOB] = job
    app.run()
    texts = [p.proto.text for p in app.get("progress")]
    assert any("evaluation: 500 of 1,000 test images" in t and "left" in t for t in texts), texts
    assert not app.button(key=state.TRAIN_CANCEL).disabled  # Cancel works while evaluating


def live_data(app: AppTest) -> dict:
    return component_data(app, "capsviz.live_decoder")


def tiles_data(app: AppTest) -> dict:
    return component_data(app, "capsviz.coupling_tiles")


def test_pose_slider_captions_are_figures_a_reader_can_take_literally(app_env):
    """They said 'ink -114%' (the change over a faint decode's ink) and 'middle' for nearly every dimension."""

    app = draw(start(), 7)
    labels = live_data(app)["labels"]
    assert len(labels) == 16
    form = re.compile(r"\d+ grey levels · ink \d+% → \d+%( · (moves [\d.]+ px \w+(, [\d.]+ px \w+)?|stays put))?")
    assert all(form.fullmatch(label) for label in labels), labels
    assert len({label.split(" · ")[-1] for label in labels}) > 4  # the movements tell the dimensions apart
    assert any("share of this input's ink" in c.value for c in app.caption)


def test_live_decoder_gets_weights_once_and_its_reports_reach_the_server(app_env):
    app = draw(start(), 3)
    first = live_data(app)
    assert first["weights"] is not None and len(first["weights"]["layers"]) == 3  # sent with the first view
    assert first["digit"] == int(app.metric[0].value) and len(first["pose"]) == 16 and len(first["labels"]) == 16
    before = heatmap(open_server_pose(app), "fig_pose")
    app.session_state[state.LIVE_DECODER] = {"deltas": [0.0] * 5 + [0.2] + [0.0] * 10}  # a release in the page
    app.run()
    assert live_data(app)["weights"] is None  # not sent again for the same model
    assert app.slider(key=state.POSE_DIM.format(5)).value == pytest.approx(0.2)
    assert live_data(app)["deltas"][5] == pytest.approx(0.2)
    assert np.abs(heatmap(app, "fig_pose") - before).max() > 1e-3  # the server decodes the reported pose
    nonce = live_data(app)["nonce"]
    app.button(key=state.POSE_RESET).click().run()
    assert app.slider(key=state.POSE_DIM.format(5)).value == 0.0  # the old report is not applied again
    assert live_data(app)["deltas"] == [0.0] * 16 and live_data(app)["nonce"] == nonce + 1
    option = save_run(app_env, "20260101-000000-other", seed=1)
    app.run()  # the sidebar lists the new run
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(option).run()
    assert live_data(app)["weights"] is not None  # a new model: its weights are sent


def test_misclassified_gallery_lists_the_errors_and_a_click_explores_one(app_env):
    from capsviz.analysis.mistakes import misclassified
    from capsviz.data import load_mnist
    from capsviz.ui.gallery import SHOWN

    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.SAMPLE_MODE).set_value("misclassified").run()
    app.button(key=state.GALLERY_OPEN).click().run()
    assert not app.exception
    import os

    errors = misclassified(
        load_checkpoint(SHIPPED_CHECKPOINT)[0], load_mnist(os.environ["CAPSVIZ_DATA"], train=False), routing_iters=3
    )
    picks = [b for b in app.button if b.key and b.key.startswith(state.GALLERY_PICK)]
    assert len(picks) == min(len(errors), SHOWN) and errors  # the synthetic digits fool the shipped model
    assert any("test images are wrong" in c.value for c in app.caption)
    chosen = picks[-1]
    index = int(chosen.key.removeprefix(state.GALLERY_PICK))
    true, predicted = (int(v) for v in chosen.label.split("→"))
    chosen.click().run()
    assert any(f"MNIST test image #{index}, labelled **{true}**" in c.value for c in app.caption)
    assert app.metric[0].value == str(predicted)


def test_the_input_is_decoded_as_each_digit(app_env):
    app = draw(start(), 3)
    strip = figure(app, "fig_each_digit")
    ticks = strip["layout"]["xaxis"]["ticktext"]
    assert len(ticks) == 10 and f"<b>{app.metric[0].value}</b>" in ticks[int(app.metric[0].value)]
    assert heatmap(app, "fig_each_digit").shape == (28, 10 * 29 - 1)
    said = next(c.value for c in app.caption if "decoder's drawing from one capsule's pose alone" in c.value)
    assert "long here, and their images differ from one another by" in said and "grey levels a pixel" in said
    assert said.endswith("so their images look alike.")  # why nine of the ten look the same


def test_alikeness_is_the_mean_pixel_difference_among_the_others_and_to_the_winner():
    from capsviz.analysis.perturb import alikeness

    images = np.zeros((3, 2, 2))
    images[0] = 1.0  # the winner
    images[2, 0, 0] = 1.0  # one pixel of four differs between the two others
    assert alikeness(images, 0) == pytest.approx((0.25, (1.0 + 0.75) / 2))


def test_a_link_restores_an_mnist_view(app_env):
    app = start_with({"src": "mnist", "i": "7", "model": "shipped", "iters": "2", "digit": "4"})
    assert any("MNIST test image #7," in c.value for c in app.caption)
    assert app.slider(key=state.ROUTING_ITERS).value == 2
    assert app.selectbox(key=state.ROUTING_DIGIT).value == 4 and app.selectbox(key=state.POSE_CLASS).value == 4
    assert not app.warning or all("Session State" not in w.value for w in app.warning)
    assert app.query_params["i"] in ("7", ["7"]) and app.query_params["iters"] in ("2", ["2"])


def test_a_drawing_travels_in_the_link_as_its_28x28_input(app_env):
    from capsviz.ui.share import decode_image, encode_image

    app = draw(start(), 3)
    params = {name: v if isinstance(v, str) else v[-1] for name, v in app.query_params.items()}
    assert params["src"] == "image" and params["model"] == "shipped"
    assert len(params["img"]) == 1046  # 784 bytes in base64url without its 2 padding characters
    x = to_mnist(draw_digit(3))
    assert torch.allclose(decode_image(encode_image(x)), x, atol=1 / 255)
    again = start_with(params)
    assert again.metric[0].value == app.metric[0].value
    assert any("from the link" in image.captions[0] for image in again.get("image"))
    again.button(key=state.SHARE_DISCARD).click().run()
    assert any("Draw a digit" in info.value for info in again.info)


def test_a_broken_link_is_ignored(app_env):
    app = start_with({"src": "image", "img": "not-base64!", "iters": "9", "digit": "x", "model": "run:missing"})
    assert app.slider(key=state.ROUTING_ITERS).value == 3
    assert app.selectbox(key=state.CHECKPOINT_CHOICE).value.startswith("shipped")
    assert any("Draw a digit" in info.value for info in app.info)
    app = start_with({"src": "mnist", "i": "123456"})
    assert not app.exception


def test_the_guided_path_shows_each_stage_for_this_input(app_env):
    from capsviz.analysis import stages

    app = draw(start(), 3)
    control = app.get("button_group")[0]
    assert len(control.proto.options) == len(stages.STAGES)
    assert heatmap(app, "fig_guide").shape == (28, 28)  # the input first
    for index, rows in ((1, 4 * 21 - 1), (2, 4 * 7 - 1), (3, 10), (4, 28)):
        app.session_state[state.GUIDE_STAGE] = control.proto.options[index].content
        app.run()
        assert not app.exception
        assert heatmap(app, "fig_guide").shape[0] == rows, index
        assert any(stages.STAGES[index][2] in md.value for md in app.markdown)


def test_the_primary_caps_stage_shows_turns_on_a_fixed_scale_and_measures_its_lengths(app_env):
    """All 32 tiles were uniformly yellow (every length about 1) under 'a capsule's length says a part is there'."""
    from capsviz.analysis import stages

    app = draw(start(), 7)
    control = app.get("button_group")[0]
    app.session_state[state.GUIDE_STAGE] = control.proto.options[2].content
    app.run()
    trace = figure(app, "fig_guide")["data"][0]
    assert (trace["zmin"], trace["zmax"]) == stages.TURN_SCALE
    turns = heatmap(app, "fig_guide")
    assert np.nanmax(turns) - np.nanmin(turns) > 45  # the tiles differ, where lengths were all about 1
    assert not any("length says a part is there" in md.value for md in app.markdown)
    note = next(c.value for c in app.caption if "primary capsules are longer than 0.5" in c.value)
    assert "does not say whether a part is there" in note  # the shipped model's lengths are saturated


def test_a_trained_run_downloads_as_weights_only_and_loads_back(app_env):
    """The app's own checkpoint holds Adam's state for resuming; the download holds the weights only."""
    from capsviz.train import TrainConfig, train
    from capsviz.ui.training import weights_only

    run = app_env / "runs" / "20260101-000000-small"
    import os

    from capsviz.data import load_mnist

    data = load_mnist(os.environ["CAPSVIZ_DATA"], train=True)
    result = train(data, data.head(20), run, TrainConfig(epochs=1, batch_size=32, device="cpu"))
    full = result.checkpoint.stat().st_size
    weights = weights_only(result.checkpoint)
    assert len(weights) < full / 2  # Adam keeps two tensors per weight
    model, card = load_checkpoint(weights)
    reference, _ = load_checkpoint(result.checkpoint)
    for (name, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), name
    assert card["epochs"] == 1


def test_the_coupling_matrix_expander_stays_open_after_clear_and_names_its_iteration(app_env):
    """The full-matrix expander stays open after Clear, and its title names the iteration."""
    app = draw(start(), 5)
    expander = next(e for e in app.expander if "coupling matrix" in e.label)
    assert not expander.proto.expanded and not [c for c in app.get("plotly_chart") if c.key == "fig_matrix"]
    app.session_state[state.ROUTING_MATRIX_OPEN] = True  # what opening it in the browser reports
    app.run()
    app.button(key=state.CANVAS_CLEAR).click().run()
    draw(app, 6)
    expander = next(e for e in app.expander if "coupling matrix" in e.label)
    assert expander.proto.expanded
    (matrix,) = [c for c in app.get("plotly_chart") if c.key == "fig_matrix"]
    assert "iteration 3" in json.loads(matrix.proto.spec)["layout"]["title"]["text"]


def test_a_tiles_click_report_is_read_as_a_capsule_index():
    from capsviz.ui.tiles import picked

    assert picked({"picked": 500}) == 500 and picked({"picked": 7.0}) == 7
    for junk in (None, {}, {"picked": None}, {"picked": True}, {"picked": "5"}, {"picked": 2.5}):
        assert picked(junk) is None, junk


def test_the_last_verdict_is_cleared_before_a_search_for_a_misclassified_image(app_env, monkeypatch):
    """A search takes a while: the verdict's place is emptied before it starts, so no stale "True label: 0
    (correct)" stays beside it. A search stopped by an error shows what the page had sent before it."""
    app = start()
    app.radio(key=state.INPUT_SOURCE).set_value(SAMPLE).run()
    app.radio(key=state.SAMPLE_MODE).set_value(BY_CLASS).run()
    assert [type(e).__name__ for e in app.columns[1].children.values()] != ["UnknownElement"]  # a verdict

    def stopped(*args, **kwargs):
        raise RuntimeError("stopped in the search")

    monkeypatch.setattr("capsviz.ui.inputs.find_misclassified", stopped)
    app.radio(key=state.SAMPLE_MODE).set_value(MISCLASSIFIED).run()
    assert app.exception  # (its message is redacted: the server shows no error details)
    middle = list(app.columns[1].children.values())
    assert [e.type for e in middle] == ["empty"], middle  # sent before the search: the verdict's place, empty


def test_a_search_for_a_misclassified_image_is_known_before_the_input_is_drawn(app_env):
    """The Explore tab clears the last verdict before such a search, so no stale "True label" stays beside it."""

    def page():
        import streamlit as st

        from capsviz.ui import inputs, state
        from capsviz.ui.resources import shipped_model

        loaded = shipped_model()
        for key, value in st.session_state.get("setup", {}).items():
            state.put(key, value)
        st.write(f"searching: {inputs.will_search(loaded)}")
        st.write(f"key: {loaded.key}")

    app = AppTest.from_function(page, default_timeout=60)
    app.session_state["setup"] = {state.INPUT_SOURCE: SAMPLE, state.SAMPLE_MODE: MISCLASSIFIED}
    app.run()
    assert "searching: True" in app.markdown[0].value  # nothing picked yet for this mode and model
    key = app.markdown[1].value.removeprefix("key: ")
    app.session_state[state.SAMPLE_PICKED_FOR] = (MISCLASSIFIED, None, key)
    app.run()
    assert "searching: False" in app.markdown[0].value  # already picked: the verdict stays while nothing is searched
    app.session_state["setup"] = {state.INPUT_SOURCE: SAMPLE, state.SAMPLE_MODE: RANDOM}
    app.run()
    assert "searching: False" in app.markdown[0].value


def test_presentation_offers_no_two_digit_example_it_could_not_open(app_env):
    app = start()
    assert [b for b in app.button if b.key == state.LESSON_TWO]  # the normal page opens the Two digits tab
    app.session_state[state.PRESENT] = True
    app.run()
    assert not app.exception, app.exception
    keys = [b.key for b in app.button]
    assert state.LESSON_TWO not in keys and state.LESSON_EXAMPLE.format("clean_3") in keys  # no such screen there
