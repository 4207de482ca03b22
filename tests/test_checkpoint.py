"""Checkpoints: round trips (on CAPSVIZ_TEST_DEVICE, cpu unless set: tests/conftest.py) and bad files."""

import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from capsviz.checkpoint import (
    SHIPPED_CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    load_training_state,
    read_card,
    restore_optimizer,
    save_checkpoint,
)
from capsviz.model import CapsNet

from conftest import TINY_CAPSNET


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    return CapsNet(TINY_CAPSNET).eval()


def outputs(model, x):
    with torch.no_grad():
        out = model(x, trace=True)
    return out.lengths, out.reconstruction, out.trace.couplings


def test_round_trip_rebuilds_the_same_model(tmp_path, small_model, test_device):
    small_model.to(test_device)
    path = save_checkpoint(tmp_path / "a.safetensors", small_model, {"test_accuracy": 0.5, "epochs": 2})
    model, card = load_checkpoint(path, test_device)
    assert model.config == TINY_CAPSNET
    assert card == {"test_accuracy": 0.5, "epochs": 2}
    assert read_card(path) == card
    x = torch.rand(2, 1, 28, 28).to(test_device)
    assert all(p.device == x.device for p in model.parameters())
    for a, b in zip(outputs(small_model, x), outputs(model, x)):
        assert torch.equal(a, b)
    assert not model.training


def test_half_precision_storage_loads_as_float32(tmp_path, small_model, test_device):
    small_model.to(test_device)
    path = save_checkpoint(tmp_path / "h.safetensors", small_model, half=True)
    model, _ = load_checkpoint(path, test_device)
    assert all(p.dtype == torch.float32 and p.device.type == test_device.type for p in model.parameters())
    x = torch.rand(2, 1, 28, 28).to(test_device)
    assert torch.allclose(outputs(small_model, x)[0], outputs(model, x)[0], atol=1e-3)


def test_load_from_bytes_like_an_upload(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    model, _ = load_checkpoint(path.read_bytes())
    assert model.config == TINY_CAPSNET


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, small_model, monkeypatch):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model, {"epochs": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("capsviz.checkpoint.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small_model, {"epochs": 2})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_nothing_saved_lands_among_the_shipped_models(small_model, tmp_path, monkeypatch):
    shipped = tmp_path / "pretrained"  # a stand-in, so a broken guard cannot touch the real models
    shipped.mkdir()
    monkeypatch.setattr("capsviz.checkpoint.PRETRAINED_DIR", shipped)
    for path in (shipped / SHIPPED_CHECKPOINT.name, shipped / "runs" / "last.safetensors"):
        with pytest.raises(CheckpointError, match="among the shipped models"):
            save_checkpoint(path, small_model)
    assert not list(shipped.iterdir())
    assert save_checkpoint(tmp_path / "last.safetensors", small_model).exists()  # anywhere else is fine


def test_optimizer_state_round_trip(tmp_path, small_model, test_device):
    small_model.to(test_device).train()
    optimizer = torch.optim.Adam(small_model.parameters(), lr=1e-3)
    x, labels = torch.rand(2, 1, 28, 28).to(test_device), torch.tensor([1, 2], device=test_device)
    out = small_model(x, labels=labels)
    (out.lengths.sum() + out.reconstruction.sum()).backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "t.safetensors", small_model, {"epochs": 3}, optimizer=optimizer)
    model, card, state = load_training_state(path, test_device)
    assert state.epoch == 3
    restored = torch.optim.Adam(model.parameters(), lr=1e-3)
    restore_optimizer(restored, model, state.optimizer)
    for p_old, p_new in zip(small_model.parameters(), model.parameters()):
        old, new = optimizer.state[p_old], restored.state[p_new]
        assert torch.equal(old["exp_avg"], new["exp_avg"])
        assert torch.equal(old["exp_avg_sq"], new["exp_avg_sq"])
        assert float(old["step"]) == float(new["step"])
    # the same file still loads as a plain model
    assert load_checkpoint(path)[0].config == TINY_CAPSNET


def test_a_plain_checkpoint_cannot_be_resumed(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_training_state(path)


# --- bad files -----------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04" + b"\0" * 100, struct.pack("<Q", 10) + b"{not json}"])
def test_garbage_is_rejected(tmp_path, data):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)


def test_truncated_file_is_rejected(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_a_pickled_torch_file_is_rejected_without_unpickling(tmp_path, small_model):
    path = tmp_path / "model.pt"
    torch.save(small_model.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)


def test_foreign_safetensors_file_is_rejected(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a capsviz checkpoint"):
        load_checkpoint(path)


def _rewrite(path, tensors=None, **metadata):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        meta = dict(handle.metadata())
        loaded = {k: handle.get_tensor(k) for k in handle.keys()}
    meta.update(metadata)
    save_file(tensors(loaded) if tensors else loaded, path, metadata=meta)


def test_wrong_shape_is_named(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    _rewrite(path, tensors=lambda t: {**t, "conv1.weight": torch.zeros(8, 1, 9, 9)})
    with pytest.raises(CheckpointError, match=r"conv1.weight has shape \(8, 1, 9, 9\)"):
        load_checkpoint(path)


def test_missing_tensor_is_named(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    _rewrite(path, tensors=lambda t: {k: v for k, v in t.items() if k != "digits.weight"})
    with pytest.raises(CheckpointError, match="missing.*digits.weight"):
        load_checkpoint(path)


def test_non_finite_weights_are_rejected(tmp_path, small_model):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    _rewrite(path, tensors=lambda t: {**t, "conv1.bias": torch.full_like(t["conv1.bias"], float("nan"))})
    with pytest.raises(CheckpointError, match="conv1.bias is not finite"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "metadata,message",
    [
        ({"config": "{oops"}, "unreadable model config"),
        ({"config": json.dumps({"bogus_field": 3})}, "unreadable model config"),
        ({"version": "99"}, "version"),
    ],
)
def test_bad_metadata_is_rejected(tmp_path, small_model, metadata, message):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    _rewrite(path, **metadata)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def _raw_safetensors(header: dict, payload: bytes = b"") -> bytes:
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + payload


@pytest.mark.parametrize(
    "header",
    [
        {"a": 1},
        {"a": {"dtype": "F32"}},
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": ["x", 4]}},
        {"__metadata__": [1]},
    ],
)
def test_malformed_headers_are_rejected_cleanly(tmp_path, header):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(_raw_safetensors(header, b"\0" * 4))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)


@pytest.mark.parametrize("card", ["[1]", "not json", "3"])
def test_a_card_that_is_not_an_object_is_rejected(tmp_path, small_model, card):
    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    _rewrite(path, card=card)
    with pytest.raises(CheckpointError, match="unreadable card"):
        load_checkpoint(path)


def test_checkpoints_are_readable_files_not_private_temporaries(tmp_path, small_model):
    import os

    path = save_checkpoint(tmp_path / "a.safetensors", small_model)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
