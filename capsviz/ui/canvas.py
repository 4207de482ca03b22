"""The drawing canvas: a small components v2 element (inline html/js), with Undo, Clear and the pen as buttons.

The page reports the drawing the moment a stroke ends (pointer up): the canvas as a PNG data
URL and its strokes (`{"drawing": {"raw": {"objects": [...]}, "data": "data:image/png;..."}}`,
a stroke being `{"type": "path", "t": ms, "path": [["M", x, y], ["L", x, y], ...], ...}`). It replaced
streamlit-drawable-canvas, whose report waited 200 ms after each stroke, two thirds of the
app's time budget from the mouse-up to the prediction.

Undo and Clear drive the component through `load`: a changed load (its nonce) makes the page
redraw those strokes and report them back. The last drawing is remembered in this session, so
Draw -> MNIST -> Draw brings it back.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import numpy as np
import streamlit as st

from capsviz.preprocess import open_image
from capsviz.ui import state
from capsviz.ui.text import plain

CANVAS_SIZE = 280
DEFAULT_STROKE = 20
MAX_DATA_URL = 1 << 20  # the 280x280 drawing is a PNG of a few kB to ~300 kB; a longer report is not one
MAX_STROKES = 2_000  # kept for Undo; a page could send any number
MAX_POINTS = 20_000  # and at most this many points over all of them (a digit is a few hundred): ~3 MB a session
MAX_COORDINATE = 10_000  # px; the canvas is 280, a captured pointer may leave it a little
ARITY = {"M": 2, "L": 2, "Q": 4}  # the numbers each path command takes, as the page draws them
MAX_COLOUR_CHARS = 32

HTML = '<canvas class="draw"></canvas>'

CSS = """
canvas.draw { display: block; background: #000; border-radius: 4px; touch-action: none; cursor: crosshair; }
"""

JS = r"""
function paint(st) {  // every stroke, white on black, round pen tips
  const ctx = st.ctx;
  ctx.canvas.dataset.strokes = st.objects.length;  // for the benchmark
  ctx.globalCompositeOperation = 'source-over';
  ctx.fillStyle = '#000'; ctx.fillRect(0, 0, st.size, st.size);
  ctx.lineCap = 'round'; ctx.lineJoin = 'round';
  ctx.globalCompositeOperation = st.additive ? 'lighter' : 'source-over';  // red over blue stays both: magenta
  for (const o of st.objects) {
    ctx.strokeStyle = o.stroke || '#FFFFFF'; ctx.lineWidth = o.strokeWidth || st.width;
    ctx.beginPath();
    for (const [cmd, ...p] of o.path) {
      if (cmd === 'M') ctx.moveTo(p[0], p[1]);
      else if (cmd === 'L') ctx.lineTo(p[0], p[1]);
      else if (cmd === 'Q') ctx.quadraticCurveTo(p[0], p[1], p[2], p[3]);
    }
    if (o.path.length === 1) ctx.lineTo(o.path[0][1] + 0.01, o.path[0][2]);  // a dot
    ctx.stroke();
  }
}

function newest(objects, [strokes, points]) {  // what the server keeps for Undo: the newest strokes, within its limits
  let n = 0, k = objects.length;
  while (k > 0 && objects.length - k < strokes && n + objects[k - 1].path.length <= points) {
    n += objects[--k].path.length;
  }
  return objects.slice(k);
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const canvas = parentElement.querySelector('canvas.draw');
  if (!canvas.st) {
    const st = canvas.st = { size: data.size, objects: [], stroke: null, loaded: null };
    canvas.width = canvas.height = data.size;
    canvas.style.width = canvas.style.height = data.size + 'px';
    st.ctx = canvas.getContext('2d');
    st.report = () => setStateValue('drawing',  // `load`: the last load applied, so the server can tell a stale report
      { raw: { objects: newest(st.objects, st.keep) }, data: canvas.toDataURL('image/png'), load: st.loadN || 0 });
    const at = ev => {
      const box = canvas.getBoundingClientRect();
      return [Math.round((ev.clientX - box.left) * st.size / box.width * 10) / 10,
              Math.round((ev.clientY - box.top) * st.size / box.height * 10) / 10];
    };
    canvas.addEventListener('pointerdown', ev => {
      if (st.stroke || ev.button !== 0) return;  // one stroke at a time: a second finger or another button
      st.pointer = ev.pointerId;
      canvas.setPointerCapture(ev.pointerId);
      st.stroke = { type: 'path', stroke: st.colour, strokeWidth: st.width, t: Date.now(), path: [['M', ...at(ev)]] };
      st.objects.push(st.stroke);
      paint(st);
    });
    canvas.addEventListener('pointermove', ev => {
      if (!st.stroke || ev.pointerId !== st.pointer) return;
      st.stroke.path.push(['L', ...at(ev)]);
      paint(st);
    });
    const end = ev => {  // at once: no debounce
      if (st.stroke && ev.pointerId === st.pointer) { st.stroke = null; st.report(); }
    };
    canvas.addEventListener('pointerup', end);
    canvas.addEventListener('pointercancel', end);
    paint(st);
  }
  const st = canvas.st;
  st.width = data.width;
  st.colour = data.colour || '#FFFFFF';
  st.additive = !!data.additive;
  st.keep = data.keep;
  const wanted = JSON.stringify(data.load);
  if (data.load && wanted !== st.loaded) {  // Undo, Clear or a remount: draw these strokes and report them
    st.loaded = wanted;
    canvas.dataset.load = data.load.capsviz;  // which load it shows, for the benchmark
    st.loadN = data.load.capsviz;
    const newer = st.objects.filter(o => (o.t || 0) > data.load.after);  // drawn after the click: kept
    st.objects = data.load.objects.map(o => ({ ...o, path: o.path.map(p => [...p]) })).concat(newer);
    paint(st);
    st.report();
  }
}
"""

_component = st.components.v2.component("capsviz.canvas", html=HTML, css=CSS, js=JS)


@dataclass(frozen=True)
class CanvasKeys:
    """The session-state keys of one canvas on the page, and how it draws."""

    canvas: str
    memory: str
    undo: str
    clear: str
    width: str
    buttons: str
    pen: str
    additive: bool = False  # strokes add up (two pens on one canvas stay apart in their colour channels)


EXPLORE = CanvasKeys(
    state.CANVAS, state.CANVAS_MEMORY, state.CANVAS_UNDO, state.CANVAS_CLEAR, state.STROKE_WIDTH,
    "canvas_buttons", "pen_popover",
)  # fmt: skip


def _memory(keys: CanvasKeys = EXPLORE) -> dict:
    """{"objects": the last strokes, "data": their PNG, "load": what the component loads, "n", and for one run
    "problem": why the page's last report was ignored}."""
    return st.session_state.setdefault(keys.memory, {"objects": [], "data": None, "load": None, "n": 0})


def _load(objects: list, keys: CanvasKeys = EXPLORE) -> None:
    """Make the component (re)load `objects`: the nonce changes the load even when objects do not.

    The page keeps the strokes it drew after the last one reported here (`after`, their time
    stamps): a stroke begun before this load reaches the page is not wiped by it.
    """
    memory = _memory(keys)
    memory["n"] += 1
    stamps = [o.get("t", 0) for o in memory["objects"] if isinstance(o, dict)]
    after = max([memory["load"]["after"] if memory["load"] else 0, *(t for t in stamps if isinstance(t, (int, float)))])
    memory["load"] = {"objects": objects, "after": after, "capsviz": memory["n"]}


def clear(keys: CanvasKeys = EXPLORE) -> None:
    memory = _memory(keys)
    _load([], keys)  # before forgetting the strokes: the load names the last one it replaces
    memory["objects"], memory["data"] = [], None


def undo(keys: CanvasKeys = EXPLORE) -> None:
    memory = _memory(keys)
    if memory["objects"]:
        kept = memory["objects"][:-1]
        _load(kept, keys)
        memory["objects"] = kept  # a second click before the page reports undoes one more


def show(objects: list, png: bytes) -> None:
    """Put these strokes on the canvas (an example): the page draws them, and until it reports its own
    drawing the server reads `png`, their rendering, so the prediction does not wait for the page."""
    memory = _memory()
    _load(objects)
    memory["objects"], memory["data"] = objects, png


def hidden(keys: CanvasKeys = EXPLORE) -> None:
    """Called on a run without the canvas: the next time it mounts, it loads the last drawing."""
    memory = _memory(keys)
    if memory["objects"] and (memory["load"] or {}).get("objects") is not memory["objects"]:
        _load(memory["objects"], keys)


def decode(png: bytes | None) -> np.ndarray | None:
    """The drawing's PNG -> (280, 280, 3|4) array; ValueError for anything that is not a 280x280 RGB(A) image."""
    if not png:
        return None
    image = open_image(png)  # checks the pixel count from the header before decoding
    if image.size != (CANVAS_SIZE, CANVAS_SIZE):
        raise ValueError(f"the canvas sent a {image.size[0]}x{image.size[1]} image, not its {CANVAS_SIZE}px drawing")
    if image.mode not in ("RGBA", "RGB"):
        raise ValueError(f"the canvas sent a {image.mode} image, not its RGBA drawing")
    return np.asarray(image)


def _png_bytes(data_url) -> bytes | None:
    """A data URL ("data:image/png;base64,...") -> the PNG's bytes; None for anything else."""
    if not isinstance(data_url, str) or ";base64," not in data_url or len(data_url) > MAX_DATA_URL:
        return None
    try:
        return base64.b64decode(data_url.split(";base64,", 1)[1], validate=True)
    except binascii.Error:
        return None


def _number(value, low: float, high: float) -> bool:
    """A JSON number in [low, high]: not a bool, NaN or infinity (compared exactly, so 10^400 is no error)."""
    return type(value) in (int, float) and low <= value <= high


def _stroke(stroke: dict) -> dict | None:
    """A stroke rebuilt from the fields the page draws (nothing else a page adds is kept); None if it is not one."""
    path = []
    for point in stroke["path"]:
        if not isinstance(point, list) or not point or ARITY.get(point[0]) != len(point) - 1:
            return None
        if not all(_number(v, -MAX_COORDINATE, MAX_COORDINATE) for v in point[1:]):
            return None
        path.append(list(point))
    rebuilt = {"type": "path", "path": path}
    if _number(stroke.get("t"), 0, 2**53):
        rebuilt["t"] = stroke["t"]
    if isinstance(stroke.get("stroke"), str) and len(stroke["stroke"]) <= MAX_COLOUR_CHARS:
        rebuilt["stroke"] = stroke["stroke"]
    if _number(stroke.get("strokeWidth"), 1, 100):
        rebuilt["strokeWidth"] = stroke["strokeWidth"]
    return rebuilt


def strokes(objects) -> list[dict] | None:
    """The page's strokes, the newest kept up to MAX_STROKES strokes and MAX_POINTS points; None if they are not
    strokes. Only the kept ones are read, so the work is bounded whatever the page sent."""
    if objects is None:
        return []
    if not isinstance(objects, list):
        return None
    kept, points = [], 0
    for stroke in reversed(objects):
        if not isinstance(stroke, dict) or not isinstance(stroke.get("path"), list) or not stroke["path"]:
            return None
        points += len(stroke["path"])
        if len(kept) == MAX_STROKES or points > MAX_POINTS:
            break
        rebuilt = _stroke(stroke)
        if rebuilt is None:
            return None
        kept.append(rebuilt)
    return kept[::-1]


def _take(drawing, memory: dict) -> str | None:
    """Keep the page's report as the drawing; a stale one is skipped, and one that is not a drawing leaves the
    last drawing and returns why."""
    if drawing is None:
        return None
    if not isinstance(drawing, dict):
        return "a report that is not an object"
    applied = drawing.get("load", 0)
    if type(applied) is not int or applied < memory["n"]:
        return None  # reported before the page applied the last Undo, Clear or remount: its drawing is stale
    data = _png_bytes(drawing.get("data"))
    if data is None:
        return None
    raw = drawing.get("raw")
    kept = strokes(raw.get("objects")) if isinstance(raw, dict) else None
    if kept is None and raw is not None:
        return "its strokes are not a list of paths"
    try:
        if data != memory["data"]:  # the page sends its last report with every rerun: decoded once
            decode(data)
    except ValueError as exc:
        return str(exc)
    memory["data"], memory["objects"] = data, kept or []
    return None


def _on_report(keys: CanvasKeys = EXPLORE) -> None:
    """A report from the page, read before the script runs; then only what was kept stays in the session, not
    the page's own copy (a page may send up to Streamlit's 25 MB a message)."""
    memory = _memory(keys)
    memory["problem"] = _take((st.session_state.get(keys.canvas) or {}).get("drawing"), memory)
    st.session_state[keys.canvas] = {"drawing": None}


def draw_canvas(keys: CanvasKeys = EXPLORE, colour: str = "#FFFFFF") -> np.ndarray | None:
    """The canvas (white on black, like MNIST, or in `colour`) and its buttons -> RGBA array, or None before any
    drawing."""
    memory = _memory(keys)
    result = _component(
        key=keys.canvas,
        data={"size": CANVAS_SIZE, "width": state.value(keys.width, DEFAULT_STROKE), "load": memory["load"],
              "keep": [MAX_STROKES, MAX_POINTS], "colour": colour, "additive": keys.additive},
        default={"drawing": None},
        on_drawing_change=lambda: _on_report(keys),
        width="content",
        height="content",
    )  # fmt: skip
    if result.get("drawing") is not None:  # a report set without its callback (a test, or state kept from before)
        memory["problem"] = _take(result["drawing"], memory)
    problem = memory.pop("problem", None)  # before the buttons: Undo knows the new stroke
    if problem:
        st.warning(f"The canvas sent something that is not a drawing ({plain(problem)}); it was ignored.")
    buttons = st.container(horizontal=True, key=keys.buttons)
    buttons.button("Undo", key=keys.undo, on_click=undo, args=(keys,), disabled=not memory["objects"],
                   icon=":material/undo:")  # fmt: skip
    buttons.button("Clear", key=keys.clear, on_click=clear, args=(keys,), icon=":material/delete:")
    with buttons.popover("Pen", icon=":material/edit:", key=keys.pen):
        state.widget(st.slider, "Stroke width", 6, 40, key=keys.width, default=DEFAULT_STROKE)
    return decode(memory["data"])  # only a drawing that decoded is kept
