"""Data-parallel training: 2 CPU processes with gloo on a tiny synthetic MNIST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import TINY_CAPSNET

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def test_two_gloo_ranks_end_with_identical_weights(tmp_path, synthetic_root):
    out = tmp_path / "run"
    out.mkdir()
    args = [str(tmp_path / "init"), str(synthetic_root), str(out)]
    ranks = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", *args]) for r in range(2)]
    assert [p.wait(timeout=600) for p in ranks] == [0, 0]
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
    assert not torch.equal(CapsNet(TINY_CAPSNET).state_dict()["digits.weight"], zero["digits.weight"])


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
