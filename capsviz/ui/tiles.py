"""The coupling tiles, drawn in the page: one canvas, hover a cell to read it, click it to inspect it.

A Streamlit components v2 element, inline html/css/js, no build step. Python sends the spec of
`capsviz.figures.viz.coupling_tiles_spec` (1,152 values and the scale); the page draws the tiles, the
outline of the inspected capsule and the colour bar on one canvas, so "Save PNG" saves all of it.
A click reports the capsule index (trigger `picked`); the canvas carries its cell size and the
tiles' top margin (data-cell, data-top) for the browser test, and window.__capsvizTiles the time
of its last drawing for the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from capsviz.ui.widgets import PRESENT_TEXT_SCALE, presenting

HTML = '<div class="tiles"></div>'

CSS = """
.tiles { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); }
.tiles canvas { display: block; cursor: pointer; }
.tiles .under { display: flex; justify-content: space-between; gap: 0.5rem; align-items: baseline; }
.tiles .status { font-size: 0.75rem; opacity: 0.8; min-height: 1.2em; }
.tiles button { font: inherit; font-size: 0.75rem; color: inherit; background: none; cursor: pointer;
  border: 1px solid var(--st-border-color, #d5dae5); border-radius: 4px; padding: 0.1rem 0.4rem; white-space: nowrap; }
"""

JS = r"""
const TOP = 44, BAR = 58, MAX_CELL = 14, MIN_CELL = 3, MISSING = '#888888';  // MISSING: a value that is not a number

function rgb(hex) { return [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16)); }

function colour(stops, t) {  // piecewise-linear in RGB, like Plotly's colour scales; beyond the ends: the end colour
  if (!Number.isFinite(t)) return MISSING;
  t = Math.min(1, Math.max(0, t));
  for (let k = 1; k < stops.length; k++) {
    const [t0, c0] = stops[k - 1], [t1, c1] = stops[k];
    if (t <= t1 || k === stops.length - 1) {
      const f = t1 > t0 ? (t - t0) / (t1 - t0) : 0, a = rgb(c0), b = rgb(c1);
      return `rgb(${a.map((v, i) => Math.round(v + f * (b[i] - v))).join(',')})`;
    }
  }
}

function layout(d, width) {
  const g = d.grid, C = d.columns, rows = Math.ceil(d.types / C);
  const W = C * (g + 1) - 1, H = rows * (g + 1) - 1;
  const cell = Math.max(MIN_CELL, Math.min(MAX_CELL, Math.floor(width / W)));
  const s = d.font_scale || 1, top = Math.round(TOP * s), bar = Math.round(BAR * s);  // larger text: more room
  return { g, C, W, H, cell, s, top, width: W * cell, height: top + H * cell + bar };
}

function cellOf(d, n) {  // capsule n -> (type, row, col) and its cell (x, y) in cells
  const g = d.grid, t = Math.floor(n / (g * g)), r = Math.floor(n / g) % g, c = n % g;
  return { t, r, c, x: (t % d.columns) * (g + 1) + c, y: Math.floor(t / d.columns) * (g + 1) + r };
}

function draw(view) {
  const d = view.data, box = layout(d, view.root.clientWidth || 560), canvas = view.canvas;
  const dpr = window.devicePixelRatio || 1;
  view.box = box;
  canvas.width = Math.round(box.width * dpr); canvas.height = Math.round(box.height * dpr);
  canvas.style.width = box.width + 'px'; canvas.style.height = box.height + 'px';
  paint(canvas.getContext('2d'), d, box, dpr, getComputedStyle(view.root));
  canvas.dataset.cell = box.cell; canvas.dataset.top = box.top;
  canvas.setAttribute('aria-label', `${d.title}. ${d.subtitle}. Click a cell to inspect its capsule.`);
  const mark = window.__capsvizTiles = window.__capsvizTiles || { draws: 0 };
  mark.draws += 1; mark.drawnAt = performance.now();
}

function exported(view) {  // the drawing on screen, on its own canvas at 2x at least (as Plotly's PNGs are)
  const box = view.box, dpr = Math.max(2, window.devicePixelRatio || 1), canvas = document.createElement('canvas');
  canvas.width = Math.round(box.width * dpr); canvas.height = Math.round(box.height * dpr);
  paint(canvas.getContext('2d'), view.data, box, dpr, getComputedStyle(view.root));
  return canvas;
}

function paint(ctx, d, box, dpr, style) {  // title, cells, outline and colour bar
  const ink = style.color, font = style.fontFamily, s = box.s, top = box.top;
  const px = size => `${Math.round(size * s)}px ${font}`;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = style.getPropertyValue('--st-background-color').trim() || '#ffffff';
  ctx.fillRect(0, 0, box.width, box.height);  // the theme's background, so a saved PNG reads the same
  ctx.fillStyle = ink; ctx.textBaseline = 'alphabetic'; ctx.textAlign = 'left';
  ctx.font = `600 ${px(14)}`; ctx.fillText(d.title, 0, 16 * s);
  ctx.font = px(11); ctx.fillText(d.subtitle, 0, 34 * s);
  const span = d.high - d.low, cell = box.cell;
  d.values.forEach((v, n) => {  // null: not a number (a diverged model), drawn in MISSING
    const p = cellOf(d, n);
    ctx.fillStyle = v === null ? MISSING : colour(d.colors, (v - d.low) / span);
    ctx.fillRect(p.x * cell, top + p.y * cell, cell, cell);
  });
  if (d.selected !== null && d.selected >= 0 && d.selected < d.values.length) {
    const p = cellOf(d, d.selected);
    ctx.lineWidth = 2; ctx.strokeStyle = d.selected_color;
    ctx.strokeRect(p.x * cell - 1, top + p.y * cell - 1, cell + 2, cell + 2);
    ctx.lineWidth = 1; ctx.strokeStyle = '#ffffff';
    ctx.strokeRect(p.x * cell + 1.5, top + p.y * cell + 1.5, cell - 3, cell - 3);
  }
  const y0 = top + box.H * cell + 10, barWidth = box.width;
  const gradient = ctx.createLinearGradient(0, 0, barWidth, 0);
  d.colors.forEach(([t, c]) => gradient.addColorStop(t, c));
  ctx.fillStyle = gradient; ctx.fillRect(0, y0, barWidth, 10);
  ctx.fillStyle = ink; ctx.strokeStyle = ink; ctx.lineWidth = 1; ctx.font = px(10);
  d.ticks.forEach((v, k) => {
    const x = Math.min(barWidth - 0.5, Math.max(0.5, (v - d.low) / span * barWidth));
    ctx.beginPath(); ctx.moveTo(x, y0 + 10); ctx.lineTo(x, y0 + 14); ctx.stroke();
    ctx.textAlign = k === 0 ? 'left' : k === d.ticks.length - 1 ? 'right' : 'center';
    ctx.fillText(d.tick_labels[k], x, y0 + 14 + 11 * s);
  });
  ctx.textAlign = 'left'; ctx.font = px(11); ctx.fillText(d.scale_label, 0, y0 + 14 + 28 * s);
}

function capsuleAt(view, event) {  // the capsule under the pointer, or null over a gap or outside the tiles
  const d = view.data, box = view.box, rect = view.canvas.getBoundingClientRect();
  const scale = rect.width > 0 ? box.width / rect.width : 1;  // CSS may shrink the canvas
  const x = Math.floor((event.clientX - rect.left) * scale / box.cell);
  const y = Math.floor(((event.clientY - rect.top) * scale - box.top) / box.cell);
  if (x < 0 || y < 0 || x >= box.W || y >= box.H) return null;
  const g = box.g, c = x % (g + 1), r = y % (g + 1);
  if (c === g || r === g) return null;
  const t = Math.floor(y / (g + 1)) * box.C + Math.floor(x / (g + 1));
  return t < d.types ? t * g * g + r * g + c : null;
}

const HINT = 'Hover a cell to read its coupling; click it to inspect that primary capsule.';

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector('.tiles');
  if (!root.view) {
    root.innerHTML = `<canvas role="img"></canvas>
      <div class="under"><span class="status"></span><button type="button" class="save">Save PNG</button></div>`;
    const view = root.view = { root, canvas: root.querySelector('canvas'), status: root.querySelector('.status') };
    view.status.textContent = HINT;
    view.canvas.addEventListener('mousemove', event => {
      const n = capsuleAt(view, event);
      if (n === null) { view.status.textContent = HINT; return; }
      const p = cellOf(view.data, n), v = view.data.values[n];
      view.status.textContent = `capsule ${n} (type ${p.t}, row ${p.r}, col ${p.c}): `
        + `coupling ${v === null ? 'not a number' : v.toFixed(4)}; click to inspect`;
    });
    view.canvas.addEventListener('mouseleave', () => { view.status.textContent = HINT; });
    view.canvas.addEventListener('click', event => {
      const n = capsuleAt(view, event);
      if (n !== null) view.pick(n);
    });
    root.querySelector('.save').addEventListener('click', () => {
      const link = document.createElement('a');
      link.href = exported(view).toDataURL('image/png'); link.download = view.data.file_name; link.click();
    });
    const resized = () => { if (view.box && layout(view.data, root.clientWidth).cell !== view.box.cell) draw(view); };
    new ResizeObserver(resized).observe(root);  // a new cell size only: the width changes the layout
    document.fonts.ready.then(() => draw(view));  // the page's font may arrive after the first drawing
  }
  const view = root.view;
  view.pick = n => setTriggerValue('picked', n);
  view.data = data;
  draw(view);
}
"""

_component = st.components.v2.component("capsviz.coupling_tiles", html=HTML, css=CSS, js=JS)


def picked(value) -> int | None:
    """The capsule a click reported, from the element's state in session state (a dict), or None."""
    n = value.get("picked") if isinstance(value, dict) else None
    whole = type(n) in (int, float) and abs(n) <= 2**53 and float(n).is_integer()  # compared first: 10^400 is no error
    return int(n) if whole else None


def coupling_tiles(spec: dict, *, key: str, on_pick: Callable[[], None]) -> None:
    """Mount the tiles for `spec` (`capsviz.figures.viz.coupling_tiles_spec`); `on_pick` runs when a cell is clicked.
    In presentation mode their text is PRESENT_TEXT_SCALE times larger (11 px becomes at least 16)."""
    scale = PRESENT_TEXT_SCALE if presenting() else 1.0
    _component(key=key, data={**spec, "font_scale": scale}, on_picked_change=on_pick)
