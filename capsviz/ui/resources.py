"""Cached, shared, read-only resources: models and MNIST. Never mutated by a session.

Models are cached once per process per (file, version, device); every session reads the
same object under torch.no_grad() and never changes its weights or mode.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
import torch

from capsviz.checkpoint import SHIPPED_CHECKPOINT, CheckpointError, load_checkpoint
from capsviz.data import DataUnavailableError, Split, load_mnist
from capsviz.device import resolve_device
from capsviz.model import CapsNet
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain

RUNS_ENV = "CAPSVIZ_RUNS"
# Few torch threads: the app's batches are small, and threads waiting on each other on a shared CPU
# slow every session (docs/architecture.md).
THREADS_ENV = "CAPSVIZ_THREADS"
THREADS = max(1, (os.cpu_count() or 2) // 2)  # 1 on a 2-core machine: sessions and trainings share the cores


@dataclass(frozen=True)
class LoadedModel:
    model: CapsNet
    card: dict
    label: str  # what the sidebar shows
    key: str  # identifies the weights (for caches keyed by model)
    path: Path | None = None  # the checkpoint file, when the model came from one


@st.cache_resource(show_spinner=False)
def torch_threads() -> int:
    """Set torch's CPU threads once per server process ($CAPSVIZ_THREADS, default half the cores); returns it."""
    value = os.environ.get(THREADS_ENV, "")
    threads = int(value) if value.isdigit() and int(value) > 0 else THREADS
    torch.set_num_threads(threads)
    return threads


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or Path.cwd() / "runs")


@st.cache_resource(show_spinner=False)
def _cleaned(root: str) -> bool:
    """Once per server and runs folder: what killed writers (an earlier server, say) left in its runs goes."""
    from capsviz.train import clean_run_folders

    clean_run_folders(Path(root))
    return True


def run_checkpoints() -> list[Path]:
    """Checkpoints of finished or interrupted runs, newest first."""
    _cleaned(str(runs_dir()))
    found = []
    for path in runs_dir().glob("*/last.safetensors"):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:  # pruned by another session between the listing and now
            continue
    return [path for _, path in sorted(found, reverse=True)]


def session_watch() -> Callable[[], bool]:
    """A thread-safe "is this browser session still connected?"; always True without a server."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():  # AppTest or a bare script: no browser to lose
        return lambda: True
    runtime, session_id = Runtime.instance(), ctx.session_id
    return lambda: runtime.is_active_session(session_id)


class OpenRuns:
    """The run folders that browser sessions are showing, so that a prune another session starts keeps them."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[Path, Callable[[], bool]]] = {}  # session id -> (run folder, is it alive?)
        self._lock = threading.Lock()

    def show(self, session: str, folder: Path | None, alive: Callable[[], bool]) -> Path | None:
        """`session` now shows the run in `folder` (None: no run); returns the folder it showed before, if any."""
        with self._lock:
            before = self._open.pop(session, (None, None))[0]
            if folder is not None:
                self._open[session] = (folder, alive)
            return before

    def folders(self) -> set[Path]:
        """The folders shown by sessions still connected (closed ones are forgotten here)."""
        with self._lock:
            self._open = {s: (folder, alive) for s, (folder, alive) in self._open.items() if alive()}
            return {folder for folder, _ in self._open.values()}


@st.cache_resource
def open_runs() -> OpenRuns:
    """One per server process (cache_resource is shared by all sessions)."""
    return OpenRuns()


@st.cache_resource(max_entries=8, show_spinner="Loading the model...")
def _model_from_file(path: str, mtime: float, device: str) -> tuple[CapsNet, dict]:
    return load_checkpoint(path, device)


@st.cache_resource(max_entries=4, show_spinner="Loading the uploaded model...")
def _model_from_bytes(digest: str, _data: bytes, device: str) -> tuple[CapsNet, dict]:
    return load_checkpoint(_data, device)


def model_from_file(path: Path, device: str, label: str) -> LoadedModel:
    """Raises CheckpointError for a missing or unusable file."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    mtime = path.stat().st_mtime
    model, card = _model_from_file(str(path), mtime, device)
    return LoadedModel(model, card, label, f"{path}:{mtime}:{device}", path)


def model_from_bytes(data: bytes, device: str, label: str) -> LoadedModel:
    """Raises CheckpointError for files that are not capsviz checkpoints."""
    digest = hashlib.sha256(data).hexdigest()
    model, card = _model_from_bytes(digest, data, device)
    return LoadedModel(model, card, label, f"upload:{digest}:{device}")


def shipped_model(device: str = "cpu") -> LoadedModel:
    return model_from_file(SHIPPED_CHECKPOINT, device, "shipped (pretrained)")


@st.cache_resource(show_spinner="Loading the MNIST test set...")
def _mnist_test(root: str | None) -> Split:
    return load_mnist(root, train=False)


def mnist_test() -> tuple[Split | None, str | None]:
    """The MNIST test set, or (None, a message saying how to get it)."""
    try:
        return _mnist_test(os.environ.get("CAPSVIZ_DATA")), None
    except DataUnavailableError as exc:
        return None, plain(str(exc), MAX_MESSAGE_CHARS)  # it quotes the data root, which any path can be


def available_devices() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def resolve(device: str) -> str:
    return resolve_device(device).type
