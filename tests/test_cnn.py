"""The CNN baseline: its stated sizes, its objective, and training it through the CLI."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from capsviz import registry, tasks
from capsviz.checkpoint import load_checkpoint, read_card
from capsviz.cnn import CNN, CNNConfig

from conftest import OFFLINE_ENV, TINY_CNN
from drawings import draw_digit


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_the_default_and_the_papers_baseline_have_their_stated_sizes():
    assert count(CNN()) == 6_497_162  # CapsNet without its decoder: 6,804,224
    paper = CNNConfig.PRESETS["paper"]
    assert paper.conv_channels == (256, 256, 128) and paper.hidden == (328, 192) and not paper.pool
    assert count(CNN(paper)) == 35_445_522  # the paper's "35.4M"
    assert registry.classes("cnn") == (CNN, CNNConfig)


def test_objective_is_cross_entropy_and_scores_are_probabilities():
    torch.manual_seed(0)
    model = CNN(TINY_CNN).eval()  # eval: no dropout
    x, targets = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 9])
    with torch.no_grad():
        logits = model(x)
        loss, scores = model.objective(x, targets)
        by_hand = -(logits.log_softmax(1)[torch.arange(5), targets]).mean()
    assert logits.shape == (5, 10)
    assert torch.allclose(loss, by_hand, atol=1e-6) and torch.allclose(loss, F.cross_entropy(logits, targets))
    assert torch.allclose(scores.sum(1), torch.ones(5)) and torch.equal(scores, model.scores(x))


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(kernel_size=4), "odd"),
        (dict(conv_channels=()), "at least one"),
        (dict(conv_channels=(4, 4, 4, 4, 4)), "too small"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_bad_configs_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        CNNConfig(**values)
    with pytest.raises(ValueError, match="unknown CNNConfig fields"):
        CNNConfig.from_dict({"routing_iters": 3})


def capsviz(*args):
    env = {**OFFLINE_ENV, "CAPSVIZ_DATA": "/nonexistent-capsviz-data"}
    return subprocess.run([sys.executable, "-m", "capsviz", *map(str, args)], capture_output=True, text=True, env=env)


def test_the_cli_trains_evaluates_and_predicts_with_a_cnn(tmp_path, mnist_root):
    """`train --model cnn` on 256 real MNIST images for one epoch, then evaluate and predict its checkpoint."""
    out = tmp_path / "cnn"
    result = capsviz("train", "--model", "cnn", "--epochs", 1, "--limit", 256, "--batch-size", 64,
                     "--device", "cpu", "--data-root", mnist_root, "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = out / "last.safetensors"
    model, card = load_checkpoint(checkpoint)
    assert type(model) is CNN and model.config == CNNConfig()
    assert card["kind"] == "cnn" and card["model_config"]["hidden"] == [2048] and card["train_images"] == 256
    assert read_card(checkpoint)["epochs"] == 1
    report = capsviz("evaluate", "--checkpoint", checkpoint, "--data-root", mnist_root, "--limit", 256, "--json")
    assert report.returncode == 0, report.stderr
    measured = json.loads(report.stdout)
    assert measured["kind"] == "cnn" and measured["n"] == 256 and "routing_iters" not in measured
    assert measured["accuracy"] == pytest.approx(card["test_accuracy"], abs=1e-9)  # same 256 test images
    refused = capsviz("evaluate", "--checkpoint", checkpoint, "--routing-iters", 2, "--data-root", mnist_root)
    assert refused.returncode == 2 and "has no routing" in refused.stderr
    draw_digit(3).save(tmp_path / "three.png")
    predicted = capsviz("predict", tmp_path / "three.png", "--checkpoint", checkpoint, "--json")
    assert predicted.returncode == 0, predicted.stderr
    (row,) = json.loads(predicted.stdout)
    assert isinstance(row["label"], int) and sum(row["scores"]) == pytest.approx(1, abs=1e-5) and "lengths" not in row


def test_the_cli_refuses_options_that_do_not_fit(tmp_path, synthetic_root):
    common = ["--epochs", 1, "--limit", 32, "--device", "cpu", "--data-root", synthetic_root]
    cases = [
        (["--model", "cnn", "--routing-iters", 2], "has no routing"),
        (["--model", "cnn", "--preset", "huge"], "not a named cnn config (named: paper, small)"),
        (["--init", tmp_path / "x.safetensors", "--model", "cnn"], "comes from"),
    ]
    for extra, message in cases:
        result = capsviz("train", *common, "--out", tmp_path / "run", *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not (tmp_path / "run" / "last.safetensors").exists()


def test_a_two_digit_cnn_scores_each_class_with_a_sigmoid():
    torch.manual_seed(0)
    model = CNN(tasks.for_task(CNNConfig(conv_channels=(4, 8), hidden=(16,)), "multimnist")).eval()
    x, targets = torch.rand(3, 1, 36, 36), torch.tensor([[0, 5], [7, 2], [9, 1]])
    with torch.no_grad():
        logits = model(x)
        loss, scores = model.objective(x, targets, torch.rand(3, 2, 1, 36, 36))  # the decoder targets go unused
        present = torch.zeros(3, 10).scatter_(1, targets, 1.0)
        by_hand = -(present * F.logsigmoid(logits) + (1 - present) * F.logsigmoid(-logits)).sum(1).mean()
    assert torch.allclose(loss, by_hand, atol=1e-5)
    assert torch.allclose(scores, logits.sigmoid()) and torch.equal(scores, model.scores(x))
    assert "multimnist" in model.config.describe()
