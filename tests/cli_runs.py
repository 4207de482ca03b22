"""`python -m capsviz` in a real process (a crash such as SIGSEGV shows as its exit code), offline."""

from __future__ import annotations

import subprocess
import sys

from conftest import OFFLINE_ENV

ENV = {**OFFLINE_ENV, "CAPSVIZ_DATA": "/nonexistent-capsviz-data"}  # never downloads (conftest)


def capsviz(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "capsviz", *map(str, args)], capture_output=True, text=True, env=env or ENV, cwd=cwd
    )


def tiny_train(data_root, out, *args) -> subprocess.CompletedProcess:
    """`capsviz train` on 64 synthetic images, batch 32, on the CPU."""
    return capsviz("train", "--batch-size", 32, "--limit", 64, "--device", "cpu",
                   "--data-root", data_root, "--out", out, *args)  # fmt: skip
