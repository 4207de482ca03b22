"""What the widget guard (capsviz.ui.widget_guard) costs a rerun, side by side with Streamlit's own parse.

    python -m capsviz.bench.guard

One rerun's reports at their largest: the canvas's drawing with the most strokes and points a session keeps
(2,000 strokes, 20,000 points) and a PNG near its 1 MB limit, beside 40 slider states. The guard reads each JSON
report once more; Streamlit parses each once anyway. Medians of interleaved repeats, in one process.
"""

from __future__ import annotations

import json
import statistics
import time

from streamlit.proto.WidgetStates_pb2 import WidgetStates  # ImportError where streamlit is absent
from streamlit.runtime.state.common import unpack_widget_state_value

from capsviz.ui.widget_guard import drop_unreadable

STROKES, POINTS_PER_STROKE, PNG_CHARS = 2_000, 10, 600_000


def largest_reports() -> WidgetStates:
    paths = [
        {"type": "path", "stroke": "#ffffff", "strokeWidth": 18,
         "path": [["M", s % 280, s % 280]] + [["Q", s % 280, k, k, k] for k in range(1, POINTS_PER_STROKE)]}
        for s in range(STROKES)
    ]  # fmt: skip
    drawing = {"raw": {"objects": paths}, "data": "data:image/png;base64," + "A" * PNG_CHARS, "load": 0}
    states = WidgetStates()
    canvas = states.widgets.add()
    canvas.id, canvas.json_value = "canvas", json.dumps({"drawing": drawing})
    for k in range(40):
        slider = states.widgets.add()
        slider.id = f"slider_{k}"
        slider.double_array_value.data.append(0.1)
    return states


def guard_cost(repeat: int = 21) -> dict:
    states = largest_reports()
    guard, parse = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        drop_unreadable(states, {})
        guard.append(time.perf_counter() - start)
        start = time.perf_counter()
        for widget in states.widgets:
            unpack_widget_state_value(widget)
        parse.append(time.perf_counter() - start)
    g, p = statistics.median(guard), statistics.median(parse)
    return {"report_mb": len(states.widgets[0].json_value) / 1e6, "guard_ms": g * 1e3, "parse_ms": p * 1e3,
            "ratio": g / p}  # fmt: skip


if __name__ == "__main__":
    cost = guard_cost()
    print(f"a {cost['report_mb']:.2f} MB canvas report and 40 sliders: the guard {cost['guard_ms']:.1f} ms, "
          f"Streamlit's own parse {cost['parse_ms']:.1f} ms (guard / parse {cost['ratio']:.2f})")  # fmt: skip
