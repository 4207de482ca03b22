"""Data-parallel training: 2 CPU processes with gloo on a tiny synthetic MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from capsviz.data import load_mnist
from capsviz.distributed import Distributed
from capsviz.model import CapsNetConfig
from capsviz.train import TrainConfig, train

TINY = CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64))


def _rank(rank: int, world: int, init_file: str, root: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        splits = load_mnist(root, train=True), load_mnist(root, train=False)
        config = TrainConfig(epochs=2, batch_size=32, lr=3e-3, device="cpu", eval_batch_size=20)
        result = train(*splits, out, config, model_config=TINY, place=Distributed(rank, world))
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_end_with_identical_weights(tmp_path, synthetic_root):
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(synthetic_root), str(out)), nprocs=2, join=True)
    zero, one = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    assert zero.keys() == one.keys()
    for key in zero:
        assert torch.equal(zero[key], one[key]), key
    # rank 0 alone evaluated and wrote the checkpoint and the logs; the weights moved
    assert (out / "last.safetensors").is_file()
    log = json.loads((out / "log.json").read_text())
    assert [row["epoch"] for row in log] == [1, 2]
    from capsviz.model import CapsNet

    torch.manual_seed(0)
    assert not torch.equal(CapsNet(TINY).state_dict()["digits.weight"], zero["digits.weight"])


def test_torchrun_entry_point(tmp_path, synthetic_root):
    """The documented command: torchrun --nproc_per_node=2 -m capsviz train ..."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "capsviz", "train", "--epochs", "1", "--batch-size", "32", "--limit", "64",
        "--device", "cpu", "--data-root", str(synthetic_root), "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("epoch 1/1") == 1  # rank 0 alone reports
    card = json.loads((tmp_path / "run" / "log.json").read_text())
    assert len(card) == 1
    from capsviz.checkpoint import read_card

    assert read_card(tmp_path / "run" / "last.safetensors")["processes"] == 2
