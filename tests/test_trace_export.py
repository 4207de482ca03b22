"""capsviz.analysis.trace_export and `python -m capsviz trace`: the exported trace round-trips and tells the truth."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from capsviz.analysis import trace_export
from capsviz.analysis.xray import xray
from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from capsviz.preprocess import to_mnist

from conftest import OFFLINE_ENV
from drawings import draw_digit


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    return model


def check_trace(arrays: dict, metadata: dict, model, x: torch.Tensor, iterations: int) -> None:
    assert set(arrays) == set(trace_export.KEYS)
    n, j, d = model.config.num_primary, model.config.num_classes, model.config.digit_dim
    assert arrays["votes"].shape == (n, j, d)
    assert arrays["couplings"].shape == arrays["logits"].shape == arrays["agreements"].shape == (iterations, n, j)
    assert arrays["poses"].shape == (iterations, j, d) and arrays["lengths"].shape == (iterations, j)
    np.testing.assert_allclose(arrays["couplings"].sum(axis=-1), 1.0, atol=1e-5)  # a split over the parents
    np.testing.assert_array_equal(arrays["couplings"][0], np.float32(1 / j))  # iteration 1: exactly uniform
    np.testing.assert_array_equal(arrays["logits"][0], 0.0)
    with torch.no_grad():
        lengths = model(x[None], routing_iters=iterations).lengths[0].numpy()
    np.testing.assert_allclose(np.linalg.norm(arrays["poses"][-1], axis=-1), lengths, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["lengths"][-1], lengths, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["image"], x[0].numpy())
    assert metadata["iterations"] == str(iterations)
    assert metadata["predicted"] == str(int(lengths.argmax()))


@pytest.mark.parametrize("iterations", [1, 3, 5])
def test_export_round_trips(shipped, iterations):
    x = to_mnist(draw_digit(4))
    ray = xray(shipped, x).upto(iterations)
    data = trace_export.to_bytes(ray, predicted=int(ray.lengths[-1].argmax()), checkpoint="shipped")
    arrays, metadata = trace_export.load(data)
    check_trace(arrays, metadata, shipped, x, iterations)


def test_load_refuses_other_safetensors_files():
    with pytest.raises(ValueError, match="not a capsviz routing trace"):
        trace_export.load(SHIPPED_CHECKPOINT)


def test_trace_command_preprocesses_like_predict(shipped, tmp_path):
    image = tmp_path / "seven.png"
    draw_digit(7).save(image)
    out = tmp_path / "seven-trace.safetensors"
    run = subprocess.run(
        [sys.executable, "-m", "capsviz", "trace", str(image), "--out", str(out), "--routing-iters", "4"],
        capture_output=True,
        text=True,
        env=OFFLINE_ENV,
    )
    assert run.returncode == 0, run.stderr
    arrays, metadata = trace_export.load(out)
    from PIL import Image

    check_trace(arrays, metadata, shipped, to_mnist(Image.open(image)), 4)
    assert f"predicted {metadata['predicted']}" in run.stdout


def test_trace_command_on_blank_and_unreadable_images(tmp_path):
    blank, junk = tmp_path / "blank.png", tmp_path / "junk.png"
    draw_digit(1).point(lambda v: 0).save(blank)
    junk.write_bytes(b"not an image")
    for path, message in ((blank, "blank"), (junk, "cannot read image")):
        out = tmp_path / "out.safetensors"
        run = subprocess.run(
            [sys.executable, "-m", "capsviz", "trace", str(path), "--out", str(out)],
            capture_output=True,
            text=True,
            env=OFFLINE_ENV,
        )
        assert run.returncode == 1 and message in run.stderr and not out.exists()
