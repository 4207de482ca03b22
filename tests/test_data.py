import socket
from pathlib import Path

import pytest
import torch

from capsviz.data import (
    ENV_VAR,
    DataUnavailableError,
    Split,
    batches,
    default_data_root,
    load_mnist,
    random_shift,
)


def test_data_root_rule(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    assert default_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert default_data_root() == tmp_path / "env"
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_root() == tmp_path / "cache" / "capsviz"


def test_random_shift_moves_content_by_at_most_two_pixels_with_zero_padding():
    images = torch.zeros(500, 28, 28, dtype=torch.uint8)
    images[:, 10:18, 10:18] = 200
    shifted = random_shift(images, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(shifted.sum(dim=(1, 2)), images.sum(dim=(1, 2)))  # nothing lost
    offsets = set()
    for img in shifted:
        rows = torch.nonzero(img.any(dim=1)).flatten()
        cols = torch.nonzero(img.any(dim=0)).flatten()
        offsets.add((rows[0].item() - 10, cols[0].item() - 10))
    assert offsets == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_random_shift_fills_with_zeros():
    images = torch.full((50, 28, 28), 255, dtype=torch.uint8)
    shifted = random_shift(images, generator=torch.Generator().manual_seed(1))
    assert (shifted == 0).any() and set(shifted.unique().tolist()) <= {0, 255}


def test_batches_cover_the_split_once():
    split = Split(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10))
    seen = torch.cat([labels for _, labels in batches(split, 4, shuffle=True)])
    assert sorted(seen.tolist()) == list(range(10))


def test_synthetic_idx_files_load(synthetic_root):
    train = load_mnist(synthetic_root, train=True)
    assert train.images.shape == (96, 28, 28) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64


def test_real_mnist_has_the_standard_sizes(mnist_root):
    assert len(load_mnist(mnist_root, train=True)) == 60_000
    assert len(load_mnist(mnist_root, train=False)) == 10_000


def _offline(*args, **kwargs):
    raise OSError("network is unreachable (test forces offline)")


def test_missing_data_without_network_is_one_clear_error(tmp_path, monkeypatch):
    # This machine has no internet; force the same on machines that do, so the test is stable.
    monkeypatch.setattr(socket, "create_connection", _offline)
    with pytest.raises(DataUnavailableError) as info:
        load_mnist(tmp_path / "empty", train=False)
    message = str(info.value)
    assert str(Path(tmp_path / "empty" / "MNIST" / "raw")) in message
    assert "copy" in message and ENV_VAR in message


def test_shards_are_disjoint_equal_and_share_one_shuffle():
    split = Split(torch.zeros(11, 28, 28, dtype=torch.uint8), torch.arange(11))

    def shard(rank):
        gen = torch.Generator().manual_seed(5)
        return torch.cat([labels for _, labels in batches(split, 2, shuffle=True, generator=gen, shard=(rank, 2))])

    zero, one = shard(0), shard(1)
    assert len(zero) == len(one) == 5  # 11 // 2: every rank takes the same number of steps
    assert not set(zero.tolist()) & set(one.tolist())
