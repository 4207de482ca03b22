"""The running app's server-side latency, through Streamlit's AppTest (the real script, in-process).

- stroke: a new canvas drawing arrives (the component reports it under its key, the way the
  browser does) -> the whole script reruns: preprocessing, inference with the trace, every
  figure, the Figure-4 grid, and the serialisation of all elements.
- slider: one pose slider moves -> AppTest reruns the whole script (it has no fragment-only
  reruns), while the real server reruns only the `poses` fragment; so this is an upper bound.
  The fragment times its own body on every run (`state.POSE_SECONDS`, shown as a caption in
  the app): that is the server-side cost of a slider move, reported as `slider_fragment`.
"""

from __future__ import annotations

import base64
import io
import logging
import statistics
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest  # ImportError where streamlit is absent (the GPU machine)

from capsviz.bench.interaction import canvas_drawing
from capsviz.ui import state

APP = Path(__file__).resolve().parents[2] / "app.py"


def _data_url(variant: int) -> str:
    buffer = io.BytesIO()
    canvas_drawing(variant).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _timed_run(app) -> float:
    start = time.perf_counter()
    app.run()
    elapsed = time.perf_counter() - start
    if app.exception:
        raise RuntimeError(f"the app raised: {app.exception}")
    return elapsed


def app_latency(repeat: int = 8) -> dict:
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # bare-mode warnings, not results

    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    drawings = [_data_url(v) for v in range(repeat + 1)]
    stroke = []
    for i, data in enumerate(drawings):
        app.session_state[state.CANVAS] = {"drawing": {"raw": {"objects": []}, "data": data}}
        elapsed = _timed_run(app)
        if i:  # the first drawing also warms caches
            stroke.append(elapsed)
    slider, fragment = [], []
    key = state.POSE_DIM.format(3)
    for i in range(repeat + 1):
        app.slider(key=key).set_value(round(0.02 * (i % 10) - 0.1, 2))
        elapsed = _timed_run(app)
        if i:
            slider.append(elapsed)
            fragment.append(app.session_state[state.POSE_SECONDS])
    return {
        "stroke_full_rerun": statistics.median(stroke),
        "slider_fragment": statistics.median(fragment),
        "slider_full_rerun": statistics.median(slider),
    }
