"""The pose sliders with a decoder that runs in the page: the image follows the slider while it moves.

A Streamlit components v2 element, inline html/css/js, no build step. The decoder's weights
(capsviz.analysis.browser_decoder) are sent once per model and page, kept by the page in a module-level
cache; the component asks for them again (a trigger) when it does not have them. On every
slider `input` event it decodes in plain JavaScript and redraws on the next animation frame:
the unperturbed image, the perturbed one and their difference. When a slider is released, it
reports the 16 offsets back to Python (state `deltas`), which keeps them under the server
sliders' keys, so the server's views and the browser's agree.

window.__capsvizLive holds the page's own timings (input event -> frame drawn) for the benchmark.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from capsviz.analysis import perturb
from capsviz.analysis.browser_decoder import decoder_arrays
from capsviz.model import CapsNet
from capsviz.ui import state

HTML = '<div class="live"></div>'

CSS = """
.live { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); font-size: 0.85rem; }
.images { display: flex; gap: 0.75rem; flex-wrap: wrap; margin-bottom: 0.5rem; }
figure { margin: 0; text-align: center; }
canvas { width: 140px; height: 140px; image-rendering: pixelated; background: #000; border-radius: 4px; }
figcaption { font-size: 0.75rem; opacity: 0.8; max-width: 140px; }
.stats { font-size: 0.75rem; opacity: 0.8; margin: 0 0 0.5rem 0; min-height: 1em; }
.sliders { display: grid; grid-template-columns: repeat(auto-fill, minmax(max(160px, 23%), 1fr)); gap: 0.35rem 1rem; }
.slider { display: flex; flex-direction: column; }
.slider .top { display: flex; justify-content: space-between; }
.slider input { width: 100%; accent-color: var(--st-primary-color, #ff4b4b); margin: 0.1rem 0; }
.slider small { font-size: 0.7rem; opacity: 0.7; min-height: 1em; }
"""

JS = r"""
const CACHE = new Map();  // model key -> parsed decoder, kept for the page's lifetime
let F16 = null;

function f16table() {
  if (F16) return F16;
  F16 = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    F16[h] = e === 0 ? s * Math.pow(2, -14) * (f / 1024)
      : e === 31 ? (f ? NaN : s * Infinity) : s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  return F16;
}

function unpack(b64) {  // little-endian float16 -> Float32Array
  const bin = atob(b64), n = bin.length >> 1, t = f16table(), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = t[bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8)];
  return out;
}

function parse(w) {
  return { dim: w.dim, side: w.side,
    layers: w.layers.map(l => ({ out: l.out, in: l.in, w: unpack(l.w), b: unpack(l.b) })) };
}

function dense(layer, input, active, relu) {  // out = W input + b over the non-zero inputs only
  const out = new Float32Array(layer.out), n = active.length, w = layer.w, cols = layer.in;
  for (let o = 0; o < layer.out; o++) {
    let s = layer.b[o];
    const row = o * cols;
    for (let a = 0; a < n; a++) { const i = active[a]; s += w[row + i] * input[i]; }
    out[o] = relu ? (s > 0 ? s : 0) : s;
  }
  return out;
}

function nonzero(v) { const idx = []; for (let i = 0; i < v.length; i++) if (v[i] !== 0) idx.push(i); return idx; }

function decode(net, pose, digit) {  // (D,) -> (side*side,) in [0, 1]
  const [l1, l2, l3] = net.layers, D = net.dim;
  const input = new Float32Array(l1.in);
  const active = [];
  for (let k = 0; k < D; k++) { input[digit * D + k] = pose[k]; active.push(digit * D + k); }
  const h1 = dense(l1, input, active, true);
  const h2 = dense(l2, h1, nonzero(h1), true);
  const z = dense(l3, h2, nonzero(h2), false);
  for (let i = 0; i < z.length; i++) z[i] = 1 / (1 + Math.exp(-z[i]));
  return z;
}

function paint(canvas, side, pixel) {
  const ctx = canvas.getContext('2d'), img = ctx.createImageData(side, side);
  for (let i = 0; i < side * side; i++) {
    const [r, g, b] = pixel(i);
    img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function build(root, range, step) {
  root.innerHTML = `
    <div class="images">
      <figure><canvas class="base"></canvas><figcaption>unperturbed pose</figcaption></figure>
      <figure><canvas class="pert"></canvas><figcaption>with the sliders</figcaption></figure>
      <figure><canvas class="diff"></canvas><figcaption>difference: red more ink, blue less</figcaption></figure>
    </div>
    <div class="stats">loading the decoder...</div>
    <div class="sliders"></div>`;
  const box = root.querySelector('.sliders');
  const sliders = [];
  for (let d = 0; d < 16; d++) {
    const el = document.createElement('label');
    el.className = 'slider';
    el.innerHTML = `<span class="top"><span>dim ${d}</span><output>0.00</output></span>
      <input type="range" min="${-range}" max="${range}" step="${step}" value="0" data-dim="${d}">
      <small></small>`;
    box.appendChild(el);
    sliders.push(el);
  }
  return sliders;
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  const root = parentElement.querySelector('.live');
  if (!root.st) {
    const st = root.st = { sliders: build(root, data.range, data.step), frame: 0, applied: null };
    st.canvases = ['base', 'pert', 'diff'].map(c => root.querySelector('canvas.' + c));
    st.stats = root.querySelector('.stats');
    st.deltas = () => st.sliders.map(s => parseFloat(s.querySelector('input').value));
    st.draw = () => {
      st.frame = 0;
      if (!st.net) return;
      const t0 = performance.now(), deltas = st.deltas(), side = st.net.side;
      const pose = st.pose.map((p, k) => p + deltas[k]);
      const image = decode(st.net, pose, st.digit);
      if (!st.base) st.base = decode(st.net, st.pose, st.digit);
      const base = st.base, grey = v => { const g = Math.round(255 * v); return [g, g, g]; };
      st.canvases.forEach(c => { c.width = side; c.height = side; });
      paint(st.canvases[0], side, i => grey(base[i]));
      paint(st.canvases[1], side, i => grey(image[i]));
      let most = 0;
      paint(st.canvases[2], side, i => {
        const d = image[i] - base[i]; most = Math.max(most, Math.abs(d));
        const v = Math.min(255, Math.round(255 * Math.abs(d) * 4));  // x4: a change of 0.25 is full colour
        return d > 0 ? [v, 0, 0] : [0, 0, v];
      });
      const t1 = performance.now();
      st.stats.textContent = `largest pixel change ${most.toFixed(2)} (colour full at 0.25)`
        + ` · decoded in ${(t1 - t0).toFixed(1)} ms in this page`;
      const live = window.__capsvizLive = window.__capsvizLive || { frames: 0, last: [] };
      live.frames += 1;
      if (st.inputAt !== null && st.inputAt !== undefined) { live.last.push(t1 - st.inputAt); st.inputAt = null; }
      live.decodeMs = t1 - t0;
      live.drawnAt = t1;
    };
    st.schedule = () => { if (!st.frame) st.frame = requestAnimationFrame(st.draw); };
    st.sliders.forEach(el => {
      const input = el.querySelector('input'), out = el.querySelector('output');
      input.addEventListener('input', () => {
        out.textContent = parseFloat(input.value).toFixed(2);
        if (st.inputAt === null || st.inputAt === undefined) st.inputAt = performance.now();
        st.schedule();
      });
      input.addEventListener('change', () => st.report(st.deltas()));
    });
  }
  const st = root.st;
  st.report = deltas => setStateValue('deltas', deltas);
  if (data.weights) CACHE.set(data.model, parse(data.weights));
  st.net = CACHE.get(data.model) || null;
  const identity = JSON.stringify([data.model, data.digit, data.pose]);
  if (identity !== st.identity) { st.identity = identity; st.base = null; }
  st.pose = data.pose; st.digit = data.digit;
  st.sliders.forEach((el, d) => { el.querySelector('small').textContent = data.labels[d] || ''; });
  const wanted = JSON.stringify([data.deltas, data.nonce]);
  if (wanted !== st.applied) {  // the server reset or set the offsets
    st.applied = wanted;
    st.sliders.forEach((el, d) => {
      el.querySelector('input').value = data.deltas[d];
      el.querySelector('output').textContent = Number(data.deltas[d]).toFixed(2);
    });
  }
  if (!st.net) { st.stats.textContent = 'loading the decoder...'; setTriggerValue('need_weights', data.model); return; }
  st.schedule();
}
"""

_component = st.components.v2.component("capsviz.live_decoder", html=HTML, css=CSS, js=JS)


@st.cache_resource(max_entries=4, show_spinner=False)
def _arrays(model_key: str, _model: CapsNet) -> dict:
    return decoder_arrays(_model)


def reported_offsets(result) -> list[float] | None:
    """The offsets in the page's report: exactly 16 finite numbers, clipped to the sliders' range; else None."""
    reported = result.get("deltas") if isinstance(result, dict) else getattr(result, "deltas", None)
    if not isinstance(reported, list) or len(reported) != 16:
        return None
    if not all(type(v) in (int, float) and -1e6 <= v <= 1e6 for v in reported):  # no bool, NaN, inf or 10^400
        return None
    return [float(np.clip(v, -perturb.PAPER_RANGE, perturb.PAPER_RANGE)) for v in reported]


def _keep_reported(result) -> None:
    """A new report of the offsets (at a slider's release) goes under the server sliders' keys.

    Called before the server sliders are drawn in the run; a report already kept is not applied
    again, so Reset or a server slider is not overwritten by the component's last report. Anything
    but 16 numbers is ignored.
    """
    offsets = reported_offsets(result)
    if offsets is None or offsets == st.session_state.get(state.LIVE_KEPT):
        return
    st.session_state[state.LIVE_KEPT] = offsets
    for d, value in enumerate(offsets):
        st.session_state[state.POSE_DIM.format(d)] = value


def _resend() -> None:
    st.session_state.pop(state.LIVE_SENT, None)


def live_decoder(*, model_key: str, model: CapsNet, pose, digit: int, labels: list[str]) -> None:
    """Mount the live pose view for capsule `digit` with its (16,) `pose` and per-dimension `labels`.

    Call it before the server's pose sliders: a new report from the page sets their values.
    """
    _keep_reported(st.session_state.get(state.LIVE_DECODER) or {})  # so the data below carries the report
    send = st.session_state.get(state.LIVE_SENT) != model_key
    deltas = [float(st.session_state.get(state.POSE_DIM.format(d), 0.0)) for d in range(16)]
    data = {
        "model": model_key,
        "digit": int(digit),
        "pose": [float(v) for v in pose],
        "deltas": deltas,
        "nonce": st.session_state.get(state.POSE_NONCE, 0),
        "labels": labels,
        "range": perturb.PAPER_RANGE,
        "step": 0.01,
        "weights": _arrays(model_key, model) if send else None,
    }
    st.session_state[state.LIVE_SENT] = model_key
    result = _component(
        key=state.LIVE_DECODER,
        data=data,
        default={"deltas": None},
        on_deltas_change=lambda: None,  # read below, before the server sliders are drawn
        on_need_weights_change=_resend,
    )
    _keep_reported(result)  # in case the state only arrives through the mount
