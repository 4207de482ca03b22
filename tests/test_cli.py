"""End-to-end runs of `python -m capsviz` on a tiny synthetic MNIST (real processes)."""

import json

import pytest
import torch
from cli_runs import capsviz, tiny_train
from PIL import Image

from capsviz import multimnist
from capsviz.checkpoint import load_checkpoint, read_card
from capsviz.data import load_mnist, to_float

from drawings import draw_digit


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("run")
    result = tiny_train(synthetic_root, out, "--epochs", 1, "--seed", 3)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_checkpoint_logs_and_progress(trained):
    out, result = trained
    assert (out / "last.safetensors").is_file()
    log = json.loads((out / "log.json").read_text())
    card = read_card(out / "last.safetensors")
    assert len(log) == 1 and log[0]["test_accuracy"] == card["test_accuracy"] and card["test_images"] == 40
    assert "epoch 1/1" in result.stdout and "test acc" in result.stdout
    assert "loss=" in result.stderr  # the progress bar


def test_train_resume_continues(trained, synthetic_root, tmp_path):
    out, _ = trained
    resumed = tmp_path / "resumed"
    result = tiny_train(synthetic_root, resumed, "--epochs", 2, "--resume", out / "last.safetensors")
    assert result.returncode == 0, result.stderr
    log = json.loads((resumed / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2]
    assert "epoch 1/" not in result.stdout  # epoch 1 was not trained again
    assert read_card(resumed / "last.safetensors")["seed"] == 3  # unset on resume: the run's own seed


def test_keep_epochs_leaves_each_epochs_checkpoint_beside_the_last(trained, synthetic_root, tmp_path):
    """What a clock-stopped schedule ships from: epoch-N.safetensors, byte for byte the run's checkpoint then."""
    out, _ = trained
    resumed = tmp_path / "kept"
    result = tiny_train(synthetic_root, resumed, "--epochs", 3, "--resume", out / "last.safetensors", "--keep-epochs")
    assert result.returncode == 0, result.stderr
    kept = sorted(p.name for p in resumed.glob("epoch-*.safetensors"))
    assert kept == ["epoch-2.safetensors", "epoch-3.safetensors"]  # epoch 1 was not trained in this folder
    assert read_card(resumed / "epoch-2.safetensors")["epochs"] == 2
    assert (resumed / "epoch-3.safetensors").read_bytes() == (resumed / "last.safetensors").read_bytes()


def test_evaluate_json(trained, synthetic_root):
    out, _ = trained
    result = capsviz("evaluate", "--checkpoint", out / "last.safetensors", "--data-root", synthetic_root, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 40  # the whole test set, as training measured it: the same accuracy again
    assert report["accuracy"] == read_card(out / "last.safetensors")["test_accuracy"]
    assert report["checkpoint"] == str(out / "last.safetensors")


def test_predict_json_reports_each_file(trained, tmp_path):
    out, _ = trained
    drawing = tmp_path / "three.png"
    draw_digit(3).save(drawing)
    blank = tmp_path / "blank.png"
    draw_digit(3).point(lambda v: 0).save(blank)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.png"
    result = capsviz("predict", drawing, broken, blank, missing, "--checkpoint", out / "last.safetensors", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["path"] for row in rows] == [str(drawing), str(broken), str(blank), str(missing)]
    assert isinstance(rows[0]["label"], int) and len(rows[0]["lengths"]) == 10
    assert rows[1]["label"] is None and "cannot read image" in rows[1]["error"]
    assert rows[2]["label"] is None and rows[2]["blank"] is True
    assert rows[3]["label"] is None and "error" in rows[3]


def test_predict_plain_output(trained, tmp_path):
    out, _ = trained
    drawing = tmp_path / "seven.png"
    draw_digit(7).save(drawing)
    result = capsviz("predict", drawing, "--checkpoint", out / "last.safetensors")
    assert result.returncode == 0 and result.stdout.startswith(f"{drawing}: ")


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    result = capsviz("evaluate", "--data-root", tmp_path, "--checkpoint", tmp_path / "x.safetensors")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "no checkpoint file" in result.stderr


def test_missing_dataset_offline_names_folder_and_fix(trained, tmp_path):
    out, _ = trained
    result = capsviz("evaluate", "--data-root", tmp_path / "empty", "--checkpoint", out / "last.safetensors")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(tmp_path / "empty" / "MNIST" / "raw") in result.stderr and "copy" in result.stderr


def test_bad_checkpoint_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nonsense")
    drawing = tmp_path / "one.png"
    draw_digit(1).save(drawing)
    result = capsviz("predict", drawing, "--checkpoint", bad)
    assert result.returncode == 2
    assert "not a safetensors file" in result.stderr and "Traceback" not in result.stderr


def test_out_of_range_routing_iterations_are_refused_by_the_parser(tmp_path):
    result = capsviz("predict", tmp_path / "x.png", "--routing-iters", "0")
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_one_clear_error(synthetic_root, tmp_path):
    result = capsviz("train", "--device", "cuda", "--data-root", synthetic_root, "--out", tmp_path, "--limit", 8)
    assert result.returncode == 2
    assert "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


def test_init_from_a_checkpoint_without_a_kind_with_a_cosine_schedule(synthetic_root, tmp_path):
    """What the CPU continuation runs: --init from the shipped (kindless) checkpoint, --lr-schedule cosine."""
    from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
    from capsviz.model import CapsNetConfig

    out = tmp_path / "continued"
    result = tiny_train(synthetic_root, out, "--init", SHIPPED_CHECKPOINT, "--epochs", 2, "--lr", 3e-4,
                        "--lr-schedule", "cosine", "--lr-min", 1e-5)  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = json.loads((out / "log.json").read_text())
    assert [row["lr"] for row in log] == pytest.approx([3e-4, 1e-5])
    model, card = load_checkpoint(out / "last.safetensors")
    assert card["kind"] == "capsnet"
    assert CapsNetConfig.from_dict(card["model_config"]) == model.config == CapsNetConfig()


@pytest.fixture(scope="module")
def two_digit_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("multimnist")
    result = tiny_train(synthetic_root, out, "--data", "multimnist", "--routing-iters", 1, "--epochs", 1)
    assert result.returncode == 0, result.stderr
    return out / "last.safetensors"


def test_train_on_multimnist_records_the_task_and_the_routing_count(two_digit_run):
    card = read_card(two_digit_run)
    assert card["task"] == card["model_config"]["task"] == "multimnist" and card["model_config"]["input_size"] == 36
    assert card["model_config"]["routing_iters"] == 1 and card["train_images"] == 64 and card["test_images"] == 40


def test_evaluate_counts_the_test_pairs_with_both_digits_right(two_digit_run, synthetic_root):
    result = capsviz("evaluate", "--checkpoint", two_digit_run, "--data-root", synthetic_root, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    model, _ = load_checkpoint(two_digit_run)
    pairs = multimnist.fixed_test_pairs(load_mnist(synthetic_root, train=False))
    with torch.no_grad():
        top2 = model.scores(to_float(pairs.images)).topk(2, dim=1).indices.sort(dim=1).values  # (40, 2)
    right = (top2 == pairs.labels.sort(dim=1).values).all(dim=1).sum().item()
    assert (report["n"], report["errors"], report["task"]) == (40, 40 - right, "multimnist")
    assert report["accuracy"] == pytest.approx(right / 40)


def test_predict_names_the_two_digits_of_a_two_digit_model(two_digit_run, synthetic_root, tmp_path):
    pairs = multimnist.fixed_test_pairs(load_mnist(synthetic_root, train=False))
    canvas = tmp_path / "pair.png"
    Image.fromarray(pairs.images[0].numpy()).save(canvas)
    drawn = tmp_path / "drawn.png"
    Image.fromarray(pairs.images[1].numpy()).resize((180, 180)).save(drawn)
    result = capsviz("predict", canvas, drawn, "--checkpoint", two_digit_run, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    model, _ = load_checkpoint(two_digit_run)
    with torch.no_grad():
        expected = model.scores(to_float(pairs.images[:1])).topk(2).indices[0].tolist()  # the canvas as it is
    assert rows[0]["labels"] == expected and len(set(rows[1]["labels"])) == 2 and "label" not in rows[0]
    plain = capsviz("predict", canvas, "--checkpoint", two_digit_run)
    assert plain.stdout.strip() == f"{canvas}: {expected[0]} and {expected[1]}"


def test_resuming_a_two_digit_run_on_other_data_is_refused(two_digit_run, synthetic_root, tmp_path):
    result = tiny_train(synthetic_root, tmp_path / "r", "--data", "mnist", "--epochs", 2, "--resume", two_digit_run)
    assert result.returncode == 2 and "holds a multimnist model: it trains on --data multimnist" in result.stderr


def test_routing_accuracy_of_a_two_digit_model(two_digit_run, synthetic_root, tmp_path):
    out = tmp_path / "routing.json"
    result = capsviz("routing-accuracy", "--checkpoint", two_digit_run, "--data-root", synthetic_root, "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["task"] == "multimnist" and report["trained_routing_iters"] == 1 and report["test_images"] == 40
    assert list(report["errors"]) == ["1", "2", "3", "4", "5"]


def test_export_measures_a_two_digit_model_on_the_test_pairs(two_digit_run, synthetic_root, tmp_path):
    out = tmp_path / "capsnet_multimnist.safetensors"
    result = capsviz("export", two_digit_run, "--out", out, "--data-root", synthetic_root)
    assert result.returncode == 0, result.stderr
    assert "on 40 MultiMNIST test pairs (both digits right)" in result.stdout
    card = read_card(out)
    evaluated = json.loads(capsviz("evaluate", "--checkpoint", out, "--data-root", synthetic_root, "--json").stdout)
    assert card["task"] == "multimnist" and card["test_images"] == 40
    assert card["test_accuracy"] == evaluated["accuracy"] and "multimnist (36x36)" in card["model"]


def test_the_command_lines_training_defaults_are_the_trainers_own():
    from capsviz import cli
    from capsviz.train import TrainConfig

    args, trainer = cli.build_parser().parse_args(["train", "--out", "run"]), TrainConfig()
    for key in ("epochs", "lr", "lr_decay", "lr_schedule", "lr_min"):
        assert getattr(args, key) == getattr(trainer, key), key
    for command in ("evaluate", "predict", "trace", "routing-accuracy"):  # one --checkpoint, declared once
        extra = {"predict": ["x.png"], "trace": ["x.png", "--out", "t.safetensors"]}.get(command, [])
        assert cli.build_parser().parse_args([command, *extra]).checkpoint == str(cli.SHIPPED_CHECKPOINT)
