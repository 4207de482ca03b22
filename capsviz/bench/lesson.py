"""The Train tab's quick lesson preset, as a teacher starts it: through Streamlit's AppTest (the real
script), the app's own worker thread, timed from the Start click until the run is saved.

    python -m capsviz.bench --device cpu --sections lesson

Writes its run to a temporary folder ($CAPSVIZ_RUNS), never under runs/. Needs streamlit and MNIST.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest  # ImportError where streamlit is absent (the GPU machine)

from capsviz.checkpoint import load_checkpoint
from capsviz.ui import state
from capsviz.ui.resources import RUNS_ENV

APP = Path(__file__).resolve().parents[2] / "app.py"
POLL_SECONDS = 0.5


def quick_lesson(data_root: str | None = None, timeout: float = 1800.0) -> dict:
    """Seconds from Start to the saved run, and what the run reached, with the app's default (quick) preset."""
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    saved = {name: os.environ.get(name) for name in (RUNS_ENV, "CAPSVIZ_DATA")}
    with tempfile.TemporaryDirectory() as runs:
        os.environ[RUNS_ENV] = runs
        if data_root:
            os.environ["CAPSVIZ_DATA"] = str(Path(data_root).resolve())
        try:
            app = AppTest.from_file(str(APP), default_timeout=120)
            app.run()
            app.session_state[state.TABS] = "Train"  # tabs are lazy: open Train as a click does
            app.run()
            preset = app.radio(key=state.TRAIN_PRESET).value
            start = time.perf_counter()
            app.button(key=state.TRAIN_START).click().run()
            job = app.session_state[state.TRAIN_JOB]
            while job.running and time.perf_counter() - start < timeout:
                time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - start
            job.stop.set()  # past the timeout: stop it rather than leave it running
            checkpoint = job.out_dir / "last.safetensors"
            card = load_checkpoint(checkpoint)[1] if checkpoint.exists() else {}
        finally:
            for name, value in saved.items():  # the environment as it was
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    if job.error or not job.epochs:
        raise RuntimeError(f"the lesson did not finish: {job.status} {job.error or ''}")
    last = job.epochs[-1]
    return {
        "preset": preset,
        "seconds": seconds,
        "training_images": card.get("train_images"),  # what the run saw (fewer than the preset on a small MNIST)
        "epochs": job.config.epochs,
        "batch_size": job.config.batch_size,
        "test_images": card.get("test_images"),
        "test_accuracy": last.test_accuracy,
        "status": job.status,
    }
