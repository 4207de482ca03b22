"""The shipped checkpoint: it loads, its card is true on real MNIST, it reads drawings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from capsviz import registry
from capsviz.analysis import robustness
from capsviz.checkpoint import PRETRAINED_DIR, SHIPPED_CHECKPOINT, load_checkpoint, read_card, read_config
from capsviz.cnn import CNNConfig
from capsviz.files import sha256_of
from capsviz.model import CapsNetConfig

from drawings import draw_digit

SHIPPED = sorted(PRETRAINED_DIR.glob("*.safetensors"))


def test_the_explorers_capsnet_the_claims_baseline_and_the_two_digit_models_are_shipped():
    shipped = {p.name: (registry.kind_of(config := read_config(p)), config.task) for p in SHIPPED}
    assert shipped == {
        "capsnet_mnist.safetensors": ("capsnet", "mnist"),
        "cnn_mnist.safetensors": ("cnn", "mnist"),
        "capsnet_multimnist.safetensors": ("capsnet", "multimnist"),
        "capsnet_r1_multimnist.safetensors": ("capsnet", "multimnist"),
        "cnn_multimnist.safetensors": ("cnn", "multimnist"),
    }
    assert read_config(PRETRAINED_DIR / "capsnet_r1_multimnist.safetensors").routing_iters == 1
    assert read_config(PRETRAINED_DIR / "capsnet_multimnist.safetensors").routing_iters == 3
    capsnet, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    assert capsnet.config == CapsNetConfig() and sum(p.numel() for p in capsnet.parameters()) == 8_215_568
    cnn, _ = load_checkpoint(PRETRAINED_DIR / "cnn_mnist.safetensors")
    assert cnn.config == CNNConfig() and sum(p.numel() for p in cnn.parameters()) == 6_497_162


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_checkpoint_loads_with_its_card(path):
    model, card = load_checkpoint(path)
    beside = json.loads(path.with_suffix(".json").read_text())
    assert beside == card == read_card(path)
    assert card["train_images"] == 60_000 and card["test_images"] == 10_000
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert len(card["test_accuracy_per_epoch"]) == card["epochs"]
    for key in ("epochs", "device", "wall_seconds", "seed", "date", "test_accuracy", "note"):
        assert key in card, key


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_checkpoint_scores_what_its_card_claims(mnist_root, path):
    """Runs the real command on all 10,000 test images (about a minute on 2 CPU cores for CapsNet)."""
    result = subprocess.run(
        [sys.executable, "-m", "capsviz", "evaluate", "--checkpoint", str(path), "--data-root", str(mnist_root),
         "--json"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    card = read_card(path)
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


def test_the_shipped_robustness_report_describes_the_shipped_bytes():
    """pretrained/robustness.json (the Claims lab's table): every shipped MNIST model, its exact weights, and
    MNIST accuracies that agree with each card to the image."""
    report = json.loads((PRETRAINED_DIR / "robustness.json").read_text())
    entries = {Path(m["checkpoint"]).name: m for m in report["models"]}
    mnist = robustness.shipped_models()
    assert sorted(entries) == sorted(p.name for p in mnist) == ["capsnet_mnist.safetensors", "cnn_mnist.safetensors"]
    assert report["test_images"] == 10_000 and report["affine_shrunk"] == 887
    for path in mnist:
        entry, card = entries[path.name], read_card(path)
        assert entry["sha256"] == sha256_of(path), f"{path.name} changed since its robustness run: rerun it"
        assert round(entry["mnist"] * 10_000) == 10_000 - card["test_errors"]
        hits = robustness.unpack(entry["affine_correct"], 10_000)  # the paired comparisons' per-image record
        assert hits is not None and hits.sum() == round(entry["affine"] * 10_000)
    assert [(row["a"], row["b"]) for row in robustness.comparisons(report["models"], 10_000)] == [
        ("capsnet_mnist r=3", "cnn_mnist"),
        ("capsnet_mnist r=1", "capsnet_mnist r=3"),
        ("capsnet_mnist r=5", "capsnet_mnist r=3"),
    ]
