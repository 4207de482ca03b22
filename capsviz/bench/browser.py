"""The app as a user meets it: `streamlit run app.py` in headless Chromium, timed in the page.

- stroke_to_prediction: mouse-up at the end of a one-stroke digit (a 1, then a 0, alternately,
  after Clear) until the prediction shows that digit.
- stroke_to_all_figures: the same mouse-up until the last chart on the page (every Plotly figure,
  the coupling tiles' canvas and the live decoder's canvases) has changed for the last time, once
  the page is quiet.
- slider_to_image: a live pose slider's `input` event until the page has drawn the new decoded
  image (the component's own record, window.__capsvizLive).

Times are taken with performance.now() inside the page (an event listener, a MutationObserver),
so Playwright's own round trips are not counted. Medians over `repeat` repetitions. Needs
streamlit, playwright and Chromium (CAPSVIZ_CHROMIUM, default /usr/bin/chromium).
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CAPSVIZ_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]
QUIET_MS = 1500  # no chart has changed for this long: the page is done
ONE_STROKE = {  # digits drawn in a single stroke, in a unit box (x right, y down)
    1: [(0.42, 0.15), (0.55, 0.0), (0.55, 0.5), (0.55, 1.0)],
    0: [(0.5 + 0.32 * math.cos(2 * math.pi * t / 32), 0.5 + 0.48 * math.sin(2 * math.pi * t / 32)) for t in range(33)],
}

RECORDER = """() => {
  if (window.__bench) return;
  // Each chart's last change; which charts are visible is asked only at the end: reading a
  // chart's geometry inside the observer would force a layout on every mutation and slow the page.
  const bench = window.__bench = { up: null, changed: new Map() };
  bench.reset = () => { bench.up = null; bench.changed = new Map(); };
  bench.last = () => {  // the last change of a chart still on the page and visible (not in a closed expander)
    let last = 0;
    for (const [plot, t] of bench.changed) {
      if (t > last && plot.isConnected && plot.getBoundingClientRect().height > 0
          && plot.checkVisibility({ visibilityProperty: true })) last = t;
    }
    return last;
  };
  window.addEventListener('mouseup', () => { bench.up = performance.now(); }, true);
  new MutationObserver(records => {
    const now = performance.now();
    for (const r of records) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const plot = node && node.closest ? node.closest('.js-plotly-plot') : null;
      if (plot) bench.changed.set(plot, now);
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
}"""

# the last change of any chart: the Plotly figures, and the canvas elements' own marks
LAST_CHANGE = (
    "Math.max(window.__bench.last(), ...[window.__capsvizLive, window.__capsvizTiles].map(m => (m && m.drawnAt) || 0))"
)

PREDICTION = """() => {
  const el = document.querySelector('[data-testid="stMetricValue"]');
  return el ? el.innerText.trim() : null;
}"""


class BrowserBenchError(RuntimeError):
    """The app or the browser could not be started."""


class AppStartError(BrowserBenchError):
    """The server did not answer its health check in time; the message ends with its output."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_command(port: int) -> list[str]:
    """`streamlit run app.py`, headless on 127.0.0.1:`port`, without a file watcher or usage statistics."""
    return [
        sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless=true",
        f"--server.port={port}", "--server.address=127.0.0.1", "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ]  # fmt: skip


@contextlib.contextmanager
def serving(
    command: list, port: int, *, env: dict, cwd: Path = REPO, host: str = "127.0.0.1", log: Path | None = None
) -> Iterator[str]:
    """Run `command`, a Streamlit server on `port`, for the block: yields its URL once it answers, stops it after.

    Its output goes to `log` (a temporary file unless given). The benchmark and the tests all start the app here.
    """
    url = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(log or Path(tmp) / "server.log")
        with open(log, "wb") as output:
            process = subprocess.Popen([str(c) for c in command], cwd=cwd, env=env, stdout=output, stderr=output)
        try:
            _wait_healthy(process, url, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 180) -> None:
    """Until `url` answers /_stcore/health (generous: a loaded machine imports slowly), or AppStartError."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if direct.open(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        except OSError:
            time.sleep(0.5)
    output = log.read_bytes()[-2000:].decode(errors="replace")
    raise AppStartError(f"the app did not answer at {url} within {timeout:.0f} s; its output ends:\n{output}")


def _wait_idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def draw_stroke(page, box: dict, points: list[tuple[float, float]], *, steps: int = 2) -> None:
    """Draw one stroke of unit-box `points` (x right, y down) in the middle of the canvas `box`
    (a Playwright bounding box): the digit spans half its width and 70% of its height. The
    final mouse-up is what the benchmark times. tests/test_browser.py draws with it too."""
    left, top = box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.15
    width, height = box["width"] * 0.5, box["height"] * 0.7
    xy = [(left + x * width, top + y * height) for x, y in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for point in xy[1:]:
        page.mouse.move(*point, steps=steps)
    page.mouse.up()


def _one_drawing(page, digit: int) -> tuple[float, float]:
    """Clear, draw `digit` in one stroke; (ms to the prediction, ms to the last chart change)."""
    canvas = page.locator(".st-key-canvas canvas.draw").first
    before = canvas.evaluate("c => c.dataset.load || ''")
    page.locator(".st-key-canvas_clear button").click()
    _wait_idle(page)
    page.wait_for_function(f"({PREDICTION})() === null", timeout=60_000)
    deadline = time.time() + 60
    shown = "c => [c.dataset.load || '', c.dataset.strokes]"  # which load the page applied, how many strokes
    while (state := canvas.evaluate(shown))[0] == before or state[1] != "0":  # the Clear has reached the page
        if time.time() > deadline:
            raise BrowserBenchError("the canvas was not cleared within 60 s")
        page.wait_for_timeout(50)
    page.evaluate("window.__bench.reset()")
    box = canvas.bounding_box()
    draw_stroke(page, box, ONE_STROKE[digit])
    handle = page.wait_for_function(
        f"""() => {{
          const shown = ({PREDICTION})();
          return shown === '{digit}' && window.__bench.up !== null ? performance.now() - window.__bench.up : null;
        }}""",
        polling="raf",
        timeout=120_000,
    )
    to_prediction = handle.json_value()
    _wait_idle(page)
    page.wait_for_function(
        f"() => performance.now() - Math.max({LAST_CHANGE}, window.__bench.up) > {QUIET_MS}",
        polling=100,
        timeout=120_000,
    )
    last = page.evaluate(f"() => {LAST_CHANGE}")
    return to_prediction, last - page.evaluate("window.__bench.up")


def _slider_moves(page, moves: int) -> list[float]:
    slider = page.locator(".st-key-live_decoder input[type=range]").nth(3)
    slider.scroll_into_view_if_needed()
    page.wait_for_function("window.__capsvizLive && window.__capsvizLive.frames > 0", timeout=120_000)
    box = slider.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("window.__capsvizLive.last = []")
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(moves):
        offset = (i % 10 - 5) * box["width"] / 25
        page.mouse.move(x + offset, y)
        page.wait_for_timeout(40)  # a hand drags at most a few events per frame
    page.mouse.up()
    _wait_idle(page)
    return page.evaluate("window.__capsvizLive.last")


def browser_latency(repeat: int = 6, *, runs_dir: Path | None = None) -> dict:
    """Medians over `repeat` drawings (after one warm-up) and 5 x `repeat` slider events, in ms."""
    from playwright.sync_api import sync_playwright  # ImportError where playwright is absent

    if not Path(CHROMIUM).exists():
        raise BrowserBenchError(f"Chromium not found at {CHROMIUM} (set CAPSVIZ_CHROMIUM)")
    port = free_port()
    runs = runs_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"capsviz-bench-runs-{port}"
    with serving(app_command(port), port, env={**os.environ, "CAPSVIZ_RUNS": str(runs)}) as url:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_text("Draw a digit").first.wait_for(timeout=120_000)
            _wait_idle(page)
            page.evaluate(RECORDER)
            prediction, figures = [], []
            for i in range(repeat + 1):
                to_prediction, to_figures = _one_drawing(page, (1, 0)[i % 2])
                if i:  # the first drawing warms caches (and sends the decoder's weights)
                    prediction.append(to_prediction)
                    figures.append(to_figures)
            slider = _slider_moves(page, 5 * repeat)
            browser.close()
    if not slider:
        raise BrowserBenchError("the live decoder drew no frame for a slider input")
    return {
        "viewport": "1440x900",
        "repetitions": repeat,
        "stroke_to_prediction_ms": statistics.median(prediction),
        "stroke_to_all_figures_ms": statistics.median(figures),
        "slider_to_image_ms": statistics.median(slider),
        "slider_events": len(slider),
    }
