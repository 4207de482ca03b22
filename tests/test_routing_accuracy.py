"""capsviz.analysis.routing_accuracy: one pass measures every iteration count, and the JSON names its checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from capsviz import files
from capsviz.analysis import routing_accuracy
from capsviz.checkpoint import save_checkpoint
from capsviz.model import CapsNet, CapsNetConfig
from capsviz.train import evaluate

from conftest import OFFLINE_ENV, synthetic_digits


def test_one_pass_equals_separate_runs_per_iteration_count():
    torch.manual_seed(0)
    model = CapsNet(CapsNetConfig(conv_channels=32, primary_types=4)).eval()
    split = synthetic_digits(60, seed=4)
    correct = routing_accuracy.correct_per_iteration(model, split, batch_size=25)
    assert len(correct) == 5
    for r, c in enumerate(correct, start=1):
        accuracy, n = evaluate(model, split, routing_iters=r)
        assert c == round(accuracy * n), r


def test_command_writes_json_next_to_the_checkpoint_and_matches_only_those_weights(tmp_path, synthetic_root):
    torch.manual_seed(1)
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, CapsNet(CapsNetConfig(conv_channels=32, primary_types=4)))
    run = subprocess.run(
        [sys.executable, "-m", "capsviz", "routing-accuracy", "--checkpoint", str(checkpoint),
         "--data-root", str(synthetic_root), "--device", "cpu", "--limit", "30"],
        capture_output=True, text=True, env=OFFLINE_ENV,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    path = tmp_path / "model.routing.json"
    results = json.loads(path.read_text())
    assert results["test_images"] == 30 and set(results["accuracy"]) == {"1", "2", "3", "4", "5"}
    assert results["sha256"] == files.sha256_of(checkpoint)
    assert "--limit 30" in results["command"] and results["date"]
    for r in results["accuracy"]:
        assert results["errors"][r] == round(30 * (1 - results["accuracy"][r]))
    assert routing_accuracy.load_for(checkpoint) == results
    save_checkpoint(checkpoint, CapsNet(CapsNetConfig(conv_channels=32, primary_types=4)))  # other weights
    assert routing_accuracy.load_for(checkpoint) is None
    path.write_text("{broken")
    with pytest.raises(ValueError, match="could not be read"):
        routing_accuracy.load_for(checkpoint)


def test_a_shipped_measurement_belongs_to_the_shipped_checkpoint():
    """When pretrained/ carries a routing-accuracy JSON, it measured these bytes and agrees with the card."""
    from capsviz.checkpoint import SHIPPED_CHECKPOINT

    path = routing_accuracy.results_path(SHIPPED_CHECKPOINT)
    if not path.exists():
        pytest.skip(f"no {path.name} shipped")
    results = json.loads(path.read_text())
    assert results["sha256"] == files.sha256_of(SHIPPED_CHECKPOINT), "stale: rerun routing-accuracy"
    card = json.loads(SHIPPED_CHECKPOINT.with_suffix(".json").read_text())
    if results["test_images"] == card.get("test_images"):
        trained = str(card.get("routing_iters", 3))
        assert results["accuracy"][trained] == pytest.approx(card["test_accuracy"], abs=1e-9)
