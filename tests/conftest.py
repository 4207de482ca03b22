"""Shared fixtures: a tiny synthetic MNIST on disk, the real MNIST when present, drawings, and the
device the model tests run on (CAPSVIZ_TEST_DEVICE=cuda runs them on a GPU; docs/gpu.md)."""

from __future__ import annotations

import importlib.util
import os
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from capsviz.cnn import CNN, CNNConfig
from capsviz.data import ENV_VAR, Split
from capsviz.model import CapsNet, CapsNetConfig

REPO = Path(__file__).resolve().parent.parent
REQUIRE_MNIST = os.environ.get("CAPSVIZ_REQUIRE_MNIST") == "1"
TEST_DEVICE_VAR = "CAPSVIZ_TEST_DEVICE"
# capsviz.ui is the app's: the GPU machine (docs/gpu.md) has no streamlit or plotly.
NEEDS_APP = pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("streamlit", "plotly")),
    reason="the app's packages (streamlit, plotly) are not installed",
)

# Every figure the tests draw (here, in AppTest and in servers they start) is validated by Plotly,
# which the app skips for speed (capsviz.figures.viz.figure_of).
os.environ["CAPSVIZ_VALIDATE_FIGURES"] = "1"

# No test may download anything: subprocesses get every proxy pointed at a closed local
# port, so a machine with internet behaves like one without (torchvision downloads through urllib).
CLOSED_PORT = "http://127.0.0.1:9"
OFFLINE_ENV = {
    **os.environ,
    **{name: CLOSED_PORT for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    "no_proxy": "",
}


def synthetic_digits(n: int, seed: int = 0) -> Split:
    """A learnable toy MNIST: class k is a bright 6x6 square at one of 10 spots, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = (torch.rand(n, 28, 28, generator=gen) * 40).to(torch.uint8)
    for i, k in enumerate(labels.tolist()):
        row, col = 4 + (k // 5) * 12, 2 + (k % 5) * 5
        images[i, row : row + 6, col : col + 4] = 255
    return Split(images, labels)


def write_idx(folder: Path, prefix: str, split: Split) -> None:
    """Write a split as uncompressed IDX files, which torchvision loads without a download."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(split)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, n, 28, 28) + split.images.numpy().tobytes()
    )
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, n) + split.labels.to(torch.uint8).numpy().tobytes()
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic_mnist")
    raw = root / "MNIST" / "raw"
    write_idx(raw, "train", synthetic_digits(96, seed=1))
    write_idx(raw, "t10k", synthetic_digits(40, seed=2))
    return root


@pytest.fixture
def app_env(monkeypatch, tmp_path, synthetic_root) -> Path:
    """The app as a test runs it: the synthetic MNIST as its data, its own folder for runs."""
    monkeypatch.setenv("CAPSVIZ_DATA", str(synthetic_root))
    monkeypatch.setenv("CAPSVIZ_RUNS", str(tmp_path / "runs"))
    return tmp_path


def _real_mnist_root() -> Path | None:
    candidates = [os.environ.get(ENV_VAR), REPO / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = _real_mnist_root()
    if root is None:
        message = f"real MNIST not staged (set {ENV_VAR} to a folder holding MNIST/raw)"
        if REQUIRE_MNIST:
            pytest.fail(message)
        pytest.skip(message)
    return root


def chosen_device_name() -> str:
    """The device the model, routing, fast-path, checkpoint and training tests run on: cpu unless set."""
    return os.environ.get(TEST_DEVICE_VAR, "").strip() or "cpu"


def pytest_report_header(config) -> str:
    name = chosen_device_name()
    if name.startswith("cuda") and torch.cuda.is_available():
        name += f" ({torch.cuda.get_device_name(torch.device(name))}, torch {torch.__version__})"
    return f"capsviz test device ({TEST_DEVICE_VAR}): {name}"


@pytest.fixture(scope="session")
def test_device() -> torch.device:
    """torch.device from CAPSVIZ_TEST_DEVICE (default cpu); skips the test where it names an absent GPU."""
    name = chosen_device_name()
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        pytest.fail(f"{TEST_DEVICE_VAR}={name!r} is not a torch device: {exc}")
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{TEST_DEVICE_VAR}={name} but torch sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        pytest.fail(f"{TEST_DEVICE_VAR}={name!r}: the tests run on cpu or cuda")
    return device


@pytest.fixture(scope="session")
def cuda_device(test_device) -> torch.device:
    """The GPU, for checks that only real hardware can make; skipped unless CAPSVIZ_TEST_DEVICE names cuda."""
    if test_device.type != "cuda":
        pytest.skip(f"a real-GPU check: runs with {TEST_DEVICE_VAR}=cuda (docs/gpu.md)")
    return test_device


def canvas(size: int = 280, transparent: bool = False) -> np.ndarray:
    """An empty drawing canvas, RGBA like the browser canvas: black or fully transparent."""
    out = np.zeros((size, size, 4), dtype=np.uint8)
    if not transparent:
        out[:, :, 3] = 255
    return out


TINY_CAPSNET = CapsNetConfig(conv_channels=16, primary_types=4, decoder_hidden=(32, 64))  # milliseconds a pass
TINY_CNN = CNNConfig(conv_channels=(4, 8), hidden=(16,))


@pytest.fixture(scope="module")
def tiny_models() -> tuple[CapsNet, CNN]:
    """A small CapsNet and CNN, seeded, in eval mode: (capsnet, cnn)."""
    torch.manual_seed(0)
    return CapsNet(TINY_CAPSNET).eval(), CNN(TINY_CNN).eval()


def two_digit_models(folder: Path, cards: dict[str, dict] | None = None) -> Path:
    """The three models `multimnist-claims` compares, tiny and untrained, in `folder` under their shipped names;
    `cards` adds fields to a model's card (by name)."""
    from capsviz import registry, tasks
    from capsviz.checkpoint import save_checkpoint

    configs = {
        "capsnet_multimnist": TINY_CAPSNET,
        "capsnet_r1_multimnist": replace(TINY_CAPSNET, routing_iters=1),
        "cnn_multimnist": TINY_CNN,
    }
    for seed, (name, config) in enumerate(configs.items()):
        torch.manual_seed(seed)
        model = registry.build(tasks.for_task(config, "multimnist"))
        save_checkpoint(folder / f"{name}.safetensors", model, {"epochs": 1, **(cards or {}).get(name, {})})
    return folder


def routing_report(checkpoint: Path, **changes) -> dict:
    """A routing-accuracy report of `checkpoint`'s bytes, with `changes` (None: the field left out)."""
    from capsviz import files
    from capsviz.analysis import routing_accuracy

    report = {
        "format": routing_accuracy.FORMAT,
        "checkpoint": str(checkpoint),
        "sha256": files.sha256_of(checkpoint),
        "test_images": 40,
        "trained_routing_iters": 3,
        "accuracy": {str(r): 0.1 * r for r in range(1, 6)},
        "errors": {str(r): 40 - 4 * r for r in range(1, 6)},
        "date": "2026-01-01T00:00:00+00:00",
        "command": "python -m capsviz routing-accuracy --checkpoint X --limit 40",
    }
    return {name: value for name, value in {**report, **changes}.items() if value is not None}
