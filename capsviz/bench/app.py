"""The running app's server-side latency, through Streamlit's AppTest (the real script, in-process).

- stroke: a new canvas drawing arrives (the component reports it under its key, the way the
  browser does) -> the whole script reruns: preprocessing, inference with the trace, every
  figure, the Figure-4 grid, and the serialisation of all elements.
- slider: one pose slider moves -> AppTest reruns the whole script (it has no fragment-only
  reruns), while the real server reruns only the `poses` fragment; so this is an upper bound.
  The fragment times its own body on every run (`state.POSE_SECONDS`, shown as a caption in
  the app): that is the server-side cost of a slider move, reported as `slider_fragment`.
- lab slider: in the Claims lab, on the same drawing, one transform slider moves -> the lab's
  fragment (`state.LAB_SECONDS`): moving the swept transform's own slider reuses the sweep
  (`lab_slider_fragment`); moving another redoes the sweep, one batched pass per model
  (`lab_resweep_fragment`). With the shipped CNN baseline when there is one ($CAPSVIZ_BASELINE).
- presentation mode: a rerun with nothing changed on the normal page (Explore, and the Claims lab
  tab, the Claims screen's twin) and on each presentation screen, interleaved on the same drawing
  (`normal_rerun`, `normal_lab_rerun`, `present_rerun`), and a new drawing on
  the Input screen against the normal page's (`present_stroke_rerun`, `normal_stroke_rerun`):
  what the mode costs, server side.
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
        **lab_latency(app, repeat),
        **present_latency(app, repeat),
    }


def lab_latency(app, repeat: int = 8) -> dict:
    """The Claims lab's fragment, server side, on the drawing the app holds: see the module docstring."""
    from capsviz.analysis.lab import SWEEPS, baseline_checkpoint

    app.session_state[state.TABS] = "Claims lab"  # lazy tabs: open the lab the way a click does
    _timed_run(app)
    if state.LAB_SECONDS not in app.session_state:
        raise RuntimeError("the Claims lab did not run: " + "; ".join(i.value for i in app.info))
    swept = app.selectbox(key=state.LAB_SWEEP_OF).value
    other = "shear" if swept != "shear" else "rotation"
    measured = {}
    for name, label in ((swept, "lab_slider_fragment"), (other, "lab_resweep_fragment")):
        key = state.LAB_PARAM.format(name)
        low, high = SWEEPS[name][0], SWEEPS[name][-1]
        seconds = []
        for i in range(repeat + 1):
            app.slider(key=key).set_value(round(low + (high - low) * (i % 5 + 1) / 7, 2))
            _timed_run(app)
            if i:  # the first move also warms what it touches
                seconds.append(app.session_state[state.LAB_SECONDS])
        measured[label] = statistics.median(seconds)
    measured["lab_models"] = "CapsNet and the CNN baseline" if baseline_checkpoint() else "CapsNet alone (no CNN)"
    return measured


def _present(app, section: str | None, tab: str = "Explore") -> float:
    """Switch to `section` (None: the normal page's `tab`), then time one rerun with nothing changed."""
    app.session_state[state.PRESENT] = section is not None
    if section is None:
        app.session_state[state.TABS] = tab
    else:
        app.session_state[state.PRESENT_SECTION] = section
    _timed_run(app)
    return _timed_run(app)


def present_latency(app, repeat: int = 8) -> dict:
    """Presentation mode against the normal page, server side: see the module docstring."""
    from capsviz.ui.present import INPUT, SECTIONS

    normal, lab, screens = [], [], {section: [] for section in SECTIONS}
    for _ in range(repeat):  # interleaved: the machine's load drifts alike for both
        normal.append(_present(app, None))
        lab.append(_present(app, None, tab="Claims lab"))
        for section in SECTIONS:
            screens[section].append(_present(app, section))
    strokes = {}
    for name, section in (("normal_stroke_rerun", None), ("present_stroke_rerun", INPUT)):
        _present(app, section)
        seconds = []
        for i in range(repeat):
            app.session_state[state.CANVAS] = {"drawing": {"raw": {"objects": []}, "data": _data_url(i + 20)}}
            seconds.append(_timed_run(app))
        strokes[name] = statistics.median(seconds)
    app.session_state[state.PRESENT] = False
    _timed_run(app)
    return {
        "normal_rerun": statistics.median(normal),
        "normal_lab_rerun": statistics.median(lab),  # the normal page's Claims lab tab: the Claims screen's twin
        "present_rerun": {section: statistics.median(times) for section, times in screens.items()},
        **strokes,
    }
