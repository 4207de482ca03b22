"""Driving the app through Streamlit's AppTest: start it, open a tab, draw, read its figures.

The canvas cannot be driven here (it is a browser component), so drawings are injected
the way the component reports them: under its key, as {"drawing": {"raw", "data"}}.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from capsviz.ui import state

from drawings import draw_digit

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def start(tab: str | None = None) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120).run()
    assert not app.exception, app.exception
    return open_tab(app, tab) if tab else app


def open_tab(app: AppTest, label: str) -> AppTest:
    """Tabs are lazy (only the open one runs): AppTest opens one the way a click does, through its key."""
    app.session_state[state.TABS] = label
    app.run()
    assert not app.exception, app.exception
    return app


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def report(app: AppTest, image, objects: list | None = None, load: int | None = None) -> AppTest:
    """What the canvas page sends: the drawing as a PNG data URL, its strokes, and the last load it applied
    (by default the latest one the server asked for, as a page that has caught up)."""
    data = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode()
    if load is None:
        load = app.session_state[state.CANVAS_MEMORY]["n"] if state.CANVAS_MEMORY in app.session_state else 0
    app.session_state[state.CANVAS] = {"drawing": {"raw": {"objects": objects or []}, "data": data, "load": load}}
    return app.run()


def draw(app: AppTest, digit: int, objects: list | None = None, **placement) -> AppTest:
    report(app, draw_digit(digit, **placement), objects)
    assert not app.exception, app.exception
    return app


def figure(app: AppTest, key: str) -> dict:
    for element in app.get("plotly_chart"):
        if key in element.proto.id:
            return json.loads(element.proto.spec)
    raise AssertionError(f"no plotly chart with key {key}")


def array(value) -> np.ndarray:
    """Plotly's JSON for an array: a list, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(n) for n in shape.split(",")]
        return (flat.reshape(shape) if shape else flat).astype(float)
    return np.array(value, dtype=float)


def heatmap(app: AppTest, key: str) -> np.ndarray:
    return array(figure(app, key)["data"][0]["z"])


def component_data(app: AppTest, name: str) -> dict | None:
    """The data a components v2 element was mounted with (None when it was mounted without)."""
    element = next(e for e in app.get("bidi_component") if e.proto.component_name == name)
    return json.loads(element.proto.json) if element.proto.json else None


def start_with(params: dict) -> AppTest:
    """The app opened from a link holding `params`."""
    app = AppTest.from_file(APP, default_timeout=120)
    for name, value in params.items():
        app.query_params[name] = value
    app.run()
    assert not app.exception, app.exception
    return app


def shown(widget):
    """What a browser that has just mounted this widget displays: the run's value if it sent one, else the default."""
    p = widget.proto
    kind = type(widget).__name__
    if kind in ("Radio", "Selectbox"):
        return p.raw_value if p.set_value else widget.options[p.default]
    if kind == "Slider":
        return list(p.value if p.set_value else p.default)
    if kind == "NumberInput":
        field = "value" if p.set_value else "default"
        return getattr(p, field) if p.HasField(field) else None
    if kind == "ButtonGroup":
        return list(p.raw_values) if p.set_value else [p.options[i].content for i in p.default]
    return p.value if p.set_value else p.default
