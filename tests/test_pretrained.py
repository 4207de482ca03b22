"""The shipped checkpoint: it loads, its card is true on real MNIST, it reads drawings."""

import json
import subprocess
import sys

import pytest

from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint, read_card
from capsviz.model import CapsNetConfig

from drawings import draw_digit


def test_shipped_checkpoint_loads_with_its_card():
    model, card = load_checkpoint(SHIPPED_CHECKPOINT)
    assert model.config == CapsNetConfig()
    assert sum(p.numel() for p in model.parameters()) == 8_215_568
    beside = json.loads(SHIPPED_CHECKPOINT.with_suffix(".json").read_text())
    assert beside == card == read_card(SHIPPED_CHECKPOINT)
    assert card["train_images"] == 60_000 and card["test_images"] == 10_000
    for key in ("epochs", "device", "wall_seconds", "seed", "date", "test_accuracy"):
        assert key in card, key


def test_shipped_checkpoint_scores_what_its_card_claims(mnist_root):
    """Runs the real command on all 10,000 test images (about a minute on 2 CPU cores)."""
    result = subprocess.run(
        [sys.executable, "-m", "capsviz", "evaluate", "--data-root", str(mnist_root), "--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    card = read_card(SHIPPED_CHECKPOINT)
    assert report["n"] == 10_000
    assert report["errors"] == card["test_errors"]  # to the image, which is finer than 0.01%
    assert report["accuracy"] == pytest.approx(card["test_accuracy"], abs=1e-9)


POSITIONS = {
    "centre": dict(box=(60, 40, 220, 240), width=18),
    "top-left small": dict(box=(10, 10, 90, 110), width=9),
    "bottom-right": dict(box=(150, 130, 270, 270), width=14),
    "huge": dict(box=(15, 10, 265, 270), width=26),
}


def test_predict_reads_canvas_drawings_anywhere_and_any_size(tmp_path):
    paths, expected = [], []
    for digit in range(10):
        for name, placement in POSITIONS.items():
            path = tmp_path / f"{digit}-{name.replace(' ', '-')}.png"
            draw_digit(digit, **placement).save(path)
            paths.append(str(path))
            expected.append(digit)
    result = subprocess.run(
        [sys.executable, "-m", "capsviz", "predict", *paths, "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    predicted = [row["label"] for row in json.loads(result.stdout)]
    wrong = [(p, e, g) for p, e, g in zip(paths, expected, predicted) if e != g]
    assert not wrong, wrong
