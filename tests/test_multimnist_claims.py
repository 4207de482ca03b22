"""The MultiMNIST comparison: its paired arithmetic, and the real command on small untrained models."""

import json
import math

import pytest
import torch
from cli_runs import capsviz

from capsviz import cli, multimnist, registry, tasks
from capsviz.analysis import multimnist_claims
from capsviz.analysis.multimnist_claims import digits_named, paired, right_per_pair
from capsviz.checkpoint import save_checkpoint
from capsviz.cnn import CNNConfig
from capsviz.data import load_mnist
from capsviz.model import CapsNetConfig
from capsviz.train import evaluate

from conftest import TINY_CAPSNET, TINY_CNN, two_digit_models


def test_a_pair_is_right_only_when_both_digits_are_named_in_any_order():
    named = torch.tensor([[3, 5], [5, 3], [3, 7], [1, 2]])
    labels = torch.tensor([[3, 5], [3, 5], [3, 5], [3, 5]])
    assert right_per_pair(named, labels).tolist() == [True, True, False, False]
    assert digits_named(named, labels) == 5


def test_the_paired_lead_and_its_standard_error_come_from_the_pairs_only_one_model_gets_right():
    a = torch.tensor([1, 1, 0, 0, 1, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    result = paired(a, b)
    assert (result["a_only"], result["b_only"]) == (2, 1)
    assert result["lead"] == pytest.approx(1 / 6)
    assert result["se"] == pytest.approx(math.sqrt(3 - 1 / 6) / 6)  # sqrt(b + c - (b - c)^2 / n) / n
    assert paired(a, a) == {"a_only": 0, "b_only": 0, "lead": 0.0, "se": 0.0, "z": 0.0}


def _small(kind_config, seed: int):
    torch.manual_seed(seed)
    return registry.build(tasks.for_task(kind_config, "multimnist"))


def test_the_command_measures_each_model_as_evaluate_does_and_compares_them(tmp_path, synthetic_root):
    models = {
        "capsnet_multimnist": _small(CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64)), 1),
        "capsnet_r1_multimnist": _small(
            CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64), routing_iters=1), 2
        ),
        "cnn_multimnist": _small(CNNConfig(conv_channels=(4, 8), hidden=(16,)), 3),
    }
    for name, model in models.items():
        save_checkpoint(tmp_path / f"{name}.safetensors", model, {"epochs": 1})
    out = tmp_path / "claims.json"
    result = capsviz("multimnist-claims", "--models", tmp_path, "--data-root", synthetic_root, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    pairs = multimnist.fixed_test_pairs(load_mnist(synthetic_root, train=False))
    for name, model in models.items():
        accuracy, n = evaluate(model, pairs)
        assert report["models"][name]["accuracy"] == pytest.approx(accuracy) and n == report["test_pairs"] == 40
    assert [(c["a"], c["b"]) for c in report["comparisons"]] == list(multimnist_claims.COMPARISONS)
    assert "| `capsnet_multimnist` vs `cnn_multimnist` |" in result.stdout
    coupling = report["coupling"]  # the routed CapsNet's: iteration 1 is uniform over the 10 digits
    assert coupling["own"][0] == pytest.approx(0.1) == coupling["other"][0] and len(coupling["own"]) == 3
    assert multimnist_claims.load(out)["coupling"]["own"] == pytest.approx(coupling["own"])


@pytest.mark.parametrize(
    "crafted",
    ['{"models": {}, "comparisons": [], "test_pairs": "all"}', "[1, 2]", '{"models": {"a": {"accuracy": 1e400}}}',
     '{"models": {}, "comparisons": [], "test_pairs": 5, "coupling": {"own": "high", "other": []}}', "\u0000",
     "[" * 100_000 + "]" * 100_000, '{"format": "other", "models": {}, "comparisons": [], "test_pairs": 5}',
     '{"format": "capsviz-multimnist-claims", "models": {}, "comparisons": [], "test_pairs": -5}',
     '{"format": "capsviz-multimnist-claims", "models": {}, "comparisons": [], "test_pairs": 5,'
     ' "coupling": {"own": [], "other": []}}',
     '{"format": "capsviz-multimnist-claims", "models": {}, "comparisons": [], "test_pairs": 5,'
     ' "coupling": {"own": [0.1, 0.2], "other": [0.1]}}'],
)  # fmt: skip
def test_a_crafted_report_is_not_read(tmp_path, crafted):
    path = tmp_path / "claims.json"
    path.write_text(crafted)
    assert multimnist_claims.load(path) is None


def test_the_shipped_report_is_read_and_names_the_shipped_bytes():
    from capsviz.checkpoint import PRETRAINED_DIR
    from capsviz.files import sha256_of

    report = multimnist_claims.load()
    assert report is not None and report["test_pairs"] == 10_000 and len(report["coupling"]["own"]) == 3
    for name in multimnist_claims.MODELS:
        assert report["models"][name]["sha256"] == sha256_of(PRETRAINED_DIR / f"{name}.safetensors"), name


def test_the_command_names_a_missing_model_before_measuring(tmp_path, synthetic_root):
    result = capsviz("multimnist-claims", "--models", tmp_path, "--data-root", synthetic_root)
    assert result.returncode == 2 and "not shipped" in result.stderr and "cnn_multimnist" in result.stderr


def test_the_command_refuses_an_out_it_cannot_write_before_measuring(tmp_path, synthetic_root):
    result = capsviz("multimnist-claims", "--data-root", synthetic_root, "--out", tmp_path / "claims.txt")
    assert result.returncode == 2 and "must be a .json file in a writable folder" in result.stderr


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("capsnet_multimnist", TINY_CAPSNET, "it was trained on mnist, not on MultiMNIST pairs"),
        ("cnn_multimnist", tasks.for_task(TINY_CAPSNET, "multimnist"), "reads cnn_multimnist as a cnn"),
        ("capsnet_r1_multimnist", TINY_CNN, "cnn model; the comparison reads capsnet_r1_multimnist as a capsnet"),
        (
            "capsnet_r1_multimnist",
            tasks.for_task(CapsNetConfig(conv_channels=16, primary_types=4, num_classes=5), "multimnist"),
            "it classifies 5 classes of 36x36x1 input; MultiMNIST needs 10 of 36x36x1",
        ),
    ],
)
def test_the_command_names_a_model_of_another_kind_or_task_before_measuring(
    tmp_path, synthetic_root, monkeypatch, capsys, name, config, message
):
    models = two_digit_models(tmp_path / "models")
    save_checkpoint(models / f"{name}.safetensors", registry.build(config), {"epochs": 1})
    monkeypatch.setattr(multimnist_claims, "measure", lambda *a, **k: pytest.fail("measured first"))
    out = tmp_path / "claims.json"
    code = cli.main(["multimnist-claims", "--models", str(models), "--data-root", str(synthetic_root),
                     "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"{models / name}.safetensors" in err and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("epochs", ["3 | 99.9% |\n| `forged` | 1 |", 2.5, -1, [1]])
def test_a_card_whose_epochs_is_not_a_count_is_named_before_measuring(tmp_path, synthetic_root, capsys, epochs):
    models = two_digit_models(tmp_path / "models", {"cnn_multimnist": {"epochs": epochs}})
    out = tmp_path / "claims.json"
    code = cli.main(["multimnist-claims", "--models", str(models), "--data-root", str(synthetic_root),
                     "--out", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and f"{models / 'cnn_multimnist.safetensors'} has an unreadable card: 'epochs'" in captured.err
    assert not out.exists() and "forged" not in captured.out


def test_every_cell_of_the_table_stays_one_cell_whatever_it_holds():
    def report(kind: str, epochs) -> dict:
        model = {"kind": kind, "routing_iters": None, "parameters": 10, "epochs": epochs, "accuracy": 0.5,
                 "digits_named": 0.75}  # fmt: skip
        return {"test_pairs": 40, "models": {"cnn_multimnist": model}, "comparisons": [], "coupling": None}

    plain = multimnist_claims.markdown(report("cnn", 3)).splitlines()
    crafted = multimnist_claims.markdown(report("cnn | x\n| `forged` | row |", "3 |\n| 1 |")).splitlines()
    assert len(crafted) == len(plain)  # no row more
    assert [line.count(" | ") for line in crafted] == [line.count(" | ") for line in plain]  # no column more
    assert "| - |" in multimnist_claims.markdown(report("cnn", None))  # a card without epochs
