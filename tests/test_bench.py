"""The benchmark command runs end to end, and its reference computes what capsviz computes.

No test here asserts a time: the benchmark prints numbers, these tests check it can."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from capsviz.bench.browser import AppStartError, free_port, serving
from capsviz.bench.reference import ReferenceCapsNet, softmax_over_parents
from capsviz.bench.training import BenchWorkerError, Method, Worker
from capsviz.model import CapsNet
from capsviz.speed import memory
from capsviz.speed.fastpath import FAST

from conftest import NEEDS_APP, OFFLINE_ENV


def test_reference_routes_to_the_same_capsules_as_capsviz_on_the_same_weights():
    """Same conv and W weights: the notebook formulation's forward pass gives capsviz's
    capsule lengths (its decoder input and its routing gradients differ, as documented)."""
    torch.manual_seed(0)
    reference = ReferenceCapsNet().eval()
    model = CapsNet().eval()
    model.conv1.load_state_dict(reference.conv1.state_dict())
    model.primary.conv.load_state_dict(reference.primary.state_dict())
    with torch.no_grad():
        model.digits.weight.copy_(reference.W[0])
        x = torch.rand(3, 1, 28, 28)
        lengths, reconstruction = reference(x)
        assert torch.allclose(lengths, model(x).lengths, atol=1e-5)
    assert reconstruction.shape == (3, 1, 28, 28)


def test_reference_softmax_is_over_the_parents():
    couplings = softmax_over_parents(torch.randn(2, 5, 10, 1))
    assert torch.allclose(couplings.sum(dim=2), torch.ones(2, 5, 1))


@NEEDS_APP  # without them: test_bench_without_the_app_packages_skips_what_needs_them
def test_bench_command_prints_the_table_and_writes_json(tmp_path, synthetic_root):
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "capsviz.bench", "--device", "cpu", "--data-root", str(synthetic_root)]
    command += ["--steps", "1", "--rounds", "1", "--warmup", "1", "--batch-size", "16", "--repeat", "2"]
    command += ["--plain", "--json", str(out), "--sections", "training,kernels,interaction,app"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert "| measure | capsviz | reference | ratio | target | met |" in table
    rows = ("training, capsviz, images/s", "PrimaryCaps weight gradient", "PrimaryCaps input gradient")
    rows += ("conv1 forward + backward, im2col vs oneDNN NHWC", "one decode", "pose-slider move")
    rows += ("routing X-ray of one image", "lab slider move (server side", "lab slider move that redoes the sweep")
    rows += ("freed memory kept as capsviz keeps it",) if memory.supported() else ()
    for row in rows:
        assert row in table, row
    results = json.loads(out.read_text())
    methods = results["training"]["methods"]
    kept = {"reference (freed memory kept)"} if memory.supported() else set()
    assert set(methods) == {"capsviz", "capsviz (plain path)", "reference"} | kept
    assert all(m["images_per_s"] > 0 and len(m["step_seconds_all"]) == 1 for m in methods.values())
    reference = methods["reference"]["images_per_s"]
    for name, method in methods.items():  # each ratio is that method's throughput over the reference's
        assert method["vs_reference"] == pytest.approx(method["images_per_s"] / reference), name
    assert results["app"]["slider_fragment"] > 0 and results["interaction"]["decode"] > 0
    assert results["app"]["lab_slider_fragment"] > 0 and results["app"]["lab_resweep_fragment"] > 0


def test_bench_without_data_says_what_to_do(tmp_path):
    command = [sys.executable, "-m", "capsviz.bench", "--device", "cpu", "--sections", "training"]
    result = subprocess.run(
        command + ["--data-root", str(tmp_path)], capture_output=True, text=True, timeout=300, env=OFFLINE_ENV
    )
    assert result.returncode == 2
    assert "MNIST is not in" in result.stderr and "Traceback" not in result.stderr


def test_bench_without_the_app_packages_skips_what_needs_them(tmp_path):
    """As on the GPU machine (no streamlit, plotly or playwright): those sections say why, nothing crashes."""
    out = tmp_path / "bench.json"
    blocked = "import sys; sys.modules.update(dict.fromkeys(['streamlit', 'plotly', 'playwright']))"
    code = f"{blocked}; from capsviz.bench.__main__ import main; sys.exit(main(sys.argv[1:]))"
    args = ["--device", "cpu", "--sections", "interaction,app,browser", "--json", str(out)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=OFFLINE_ENV)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert results["interaction"] == {"skipped": "plotly.graph_objects is not installed"}
    assert results["app"] == {"skipped": "streamlit is not installed"}
    assert "not installed" in results["browser"]["skipped"]
    assert "| interaction | skipped: plotly.graph_objects is not installed |" in done.stdout


def test_a_failing_worker_is_reported_by_its_method(tmp_path, monkeypatch):
    """Each method trains in its own process; an error there names the method and why."""
    for name, value in OFFLINE_ENV.items():  # the worker inherits this process's environment
        monkeypatch.setenv(name, value)
    worker = Worker("capsviz", Method(FAST), tmp_path, torch.device("cpu"), batch_size=8, warmup=1)
    try:
        with pytest.raises(BenchWorkerError, match="'capsviz' worker failed: DataUnavailableError"):
            worker.receive()
    finally:
        worker.close()
    assert worker.process.poll() is not None  # the process is gone


def test_a_worker_that_dies_is_reported_not_waited_for(synthetic_root):
    worker = Worker("reference", Method(), synthetic_root, torch.device("cpu"), batch_size=8, warmup=1)
    try:
        assert worker.receive()["first_step_seconds"] > 0
        worker.process.kill()  # as the kernel's OOM killer would
        with pytest.raises(BenchWorkerError, match="'reference' worker exited"):
            worker.ask("steps", 1)
    finally:
        worker.close()


def test_bench_browser_section_reports_three_medians(tmp_path):
    """The browser section drives the real app in Chromium; its numbers are reported, never asserted."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium not installed at /usr/bin/chromium")
    pytest.importorskip("playwright")
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "capsviz.bench", "--device", "cpu", "--sections", "browser"]
    command += ["--browser-repeat", "1", "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    browser = json.loads(out.read_text())["browser"]
    assert "skipped" not in browser, browser
    for key in ("stroke_to_prediction_ms", "stroke_to_all_figures_ms", "slider_to_image_ms"):
        assert browser[key] > 0, key
    assert "live pose-slider input" in result.stdout


def test_bench_lesson_section_runs_the_quick_preset_through_the_app(tmp_path, synthetic_root):
    """The Train tab's default preset, started as a teacher starts it; its time is reported, never asserted."""
    pytest.importorskip("streamlit")
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "capsviz.bench", "--device", "cpu", "--sections", "lesson"]
    command += ["--data-root", str(synthetic_root), "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lesson = json.loads(out.read_text())["lesson"]
    assert lesson["preset"] == "Quick lesson" and lesson["status"] == "finished" and lesson["seconds"] > 0
    assert (lesson["training_images"], lesson["test_images"]) == (96, 40)  # all the synthetic MNIST has
    assert round(lesson["test_accuracy"] * 40, 9).is_integer()  # an accuracy over the 40 test images
    assert "Quick lesson (96 images, 1 epoch(s), 40 test images" in result.stdout


def test_a_server_that_exits_is_reported_at_once_with_its_output(tmp_path):
    """The one app starter (bench, browser and package tests) stops waiting when the server dies."""
    command = [sys.executable, "-c", "print('no such app'); raise SystemExit(3)"]
    with pytest.raises(AppStartError, match="no such app"), serving(command, free_port(), env=OFFLINE_ENV):
        pass


def test_the_multimnist_pilot_times_both_capsnets_side_by_side(synthetic_root, capsys):
    from capsviz.bench import multimnist as pilot

    assert pilot.main(["--data-root", str(synthetic_root), "--batch-size", "4", "--rounds", "1", "--steps", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["mnist"]["input"], result["multimnist"]["input"]) == ("28x28", "36x36")
    assert result["mnist"]["steps_timed"] == result["multimnist"]["steps_timed"] == 1 and result["ratio_cpu"] > 0
    assert result["command"].startswith("python -m capsviz.bench.multimnist --data-root")


def test_every_measured_section_has_a_table_and_runs_in_the_tables_order():
    from capsviz.bench import __main__ as bench_main
    from capsviz.bench import report

    assert tuple(bench_main.MEASURES) == tuple(report.SECTIONS)
