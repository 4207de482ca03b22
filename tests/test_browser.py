"""The real thing: `streamlit run app.py` in a real Chromium, driven by Playwright.

Draws a digit with the mouse on the real canvas, then checks that the prediction, the
capsule-length chart, the routing heatmaps and the 16 pose sliders appear with no
exception, that clicking a cell of the coupling tiles opens the capsule inspector for that
capsule, that the trace downloads as a readable file, and that moving a pose slider changes
the reconstruction. Skips where Chromium or Playwright is absent, unless
CAPSVIZ_REQUIRE_BROWSER=1 (set by .ci/run). Screenshots go to $CAPSVIZ_SCREENSHOTS when
set (the README's come from here).
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capsviz.analysis import table_export, trace_export
from capsviz.bench.browser import app_command, draw_stroke, free_port, serving
from capsviz.figures import viz

from drawings import STROKES

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parent.parent
REQUIRED = os.environ.get("CAPSVIZ_REQUIRE_BROWSER") == "1"


def _skip(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (CAPSVIZ_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip("the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from _serve({**os.environ, "CAPSVIZ_RUNS": str(tmp_path_factory.mktemp("runs"))})


def _serve(env: dict):
    port = free_port()
    with serving(app_command(port), port, env=env) as url:
        yield url


def _shot(page, name: str) -> None:
    folder = os.environ.get("CAPSVIZ_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def _draw(page, digit: int, key: str = "canvas") -> None:
    canvas = page.locator(f".st-key-{key} canvas.draw").first
    canvas.wait_for(state="visible", timeout=60_000)
    box = canvas.bounding_box()
    for stroke in STROKES[digit]:
        draw_stroke(page, box, stroke, steps=3)
        page.wait_for_timeout(300)


def _wait_idle(page) -> None:
    """Wait until Streamlit has finished rerunning (its status widget is gone)."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)


TILES = ".st-key-coupling_tiles canvas"


def _cell_centre(page, n: int) -> tuple[float, float]:
    """Capsule n's cell on the tiles canvas: tile t = n // 36 at (t // 8, t % 8), 7 cells apart."""
    canvas = page.locator(TILES)
    box = canvas.bounding_box()
    cell, top = (float(v) for v in canvas.evaluate("c => [c.dataset.cell, c.dataset.top]"))
    t, r, c = n // 36, n // 6 % 6, n % 6
    return box["x"] + ((t % 8) * 7 + c + 0.5) * cell, box["y"] + top + ((t // 8) * 7 + r + 0.5) * cell


PIXEL_AND_VALUE = """(canvas, [x, y, n]) => {
  const dpr = canvas.width / canvas.getBoundingClientRect().width;
  const rgba = canvas.getContext('2d').getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data;
  return [Array.from(rgba.slice(0, 3)), canvas.closest('.tiles').view.data.values[n]];
}"""


def _expected_colour(value: float) -> np.ndarray:
    """The tiles' diverging scale in Python: 0 -> blue, 0.1 -> white, 0.2 and above -> red."""
    stops = [(t, np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])) for t, c in viz.DIVERGING]
    t = min(max(value / 0.2, 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            return c0 + (t - t0) / (t1 - t0) * (c1 - c0)
    return stops[-1][1]


def _tile_colours_match_their_values(page, capsules: list[int]) -> None:
    canvas = page.locator(TILES)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for n in capsules:
        x, y = _cell_centre(page, n)
        rgb, value = canvas.evaluate(PIXEL_AND_VALUE, [x - box["x"], y - box["y"], n])
        assert np.abs(np.array(rgb) - _expected_colour(value)).max() <= 2, (n, rgb, value)


def _click_capsule(page, n: int) -> None:
    """Hover, then click capsule n's cell in the coupling tiles, where the user would."""
    page.locator(TILES).scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    x, y = _cell_centre(page, n)
    page.mouse.move(x, y)
    status = page.locator(".st-key-coupling_tiles .status").inner_text()
    assert status.startswith(f"capsule {n} (type {n // 36}, row {n // 6 % 6}, col {n % 6}): coupling 0."), status
    page.mouse.click(x, y)


POSE_FIGURE_Z = """() => {
  const pose = document.querySelector('.st-key-fig_pose .js-plotly-plot');
  return pose && pose.data ? JSON.stringify(pose.data[0].z) : null;  // a typed-array spec or nested lists
}"""


def _live_pixels(page) -> str:
    """The live decoder's perturbed image (inside the component's shadow root, which locators pierce)."""
    return page.locator(".st-key-live_decoder canvas.pert").evaluate("canvas => canvas.toDataURL()")


def test_draw_a_digit_and_explore_it(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 3000})  # tall: the whole app in one shot
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Draw a digit").first.wait_for(timeout=90_000)
    _shot(page, "01-start.png")

    _draw(page, 3)
    _wait_idle(page)
    metric = page.get_by_test_id("stMetricValue").first
    metric.wait_for(timeout=60_000)
    assert metric.inner_text().strip() in {str(d) for d in range(10)}
    charts = ("fig_lengths", "fig_overlay", "fig_input", "fig_recon")
    one_each = f"{list(charts)}.every(k => document.querySelectorAll(`.st-key-${{k}} .js-plotly-plot`).length === 1)"
    page.wait_for_function(one_each, timeout=60_000)  # under load a rerun can briefly show a stale copy
    assert page.locator("[data-testid='stException']").count() == 0
    assert "iteration 3" in page.locator(TILES).get_attribute("aria-label")
    _tile_colours_match_their_values(page, [0, 37, 500, 1151])  # each capsule's cell, in its value's colour
    live = page.locator(".st-key-live_decoder input[type=range]")
    assert live.count() == 16
    _shot(page, "02-drawn.png")

    _click_capsule(page, 500)
    inspector = page.locator(".st-key-inspector")
    inspector.wait_for(timeout=60_000)
    _wait_idle(page)
    assert "Primary capsule 500: type 13, row 5, col 2" in inspector.inner_text()
    with page.expect_download(timeout=30_000) as saved:  # the tiles' own PNG: everything on the canvas
        page.locator(".st-key-coupling_tiles button.save").click()
    canvas = page.locator(TILES)
    box = canvas.bounding_box()
    x, y = _cell_centre(page, 500)
    rgb, _ = canvas.evaluate(PIXEL_AND_VALUE, [x - box["x"], y - box["y"], 500])
    png = Image.open(saved.value.path()).convert("RGB")
    dpr = png.width / box["width"]
    assert dpr >= 1.99  # at 2x at least on this 1x page, as Plotly's exports are
    assert list(png.getpixel((int((x - box["x"]) * dpr), int((y - box["y"]) * dpr)))) == rgb  # the same drawing
    title = np.asarray(png.crop((0, 0, png.width, int(40 * dpr))).convert("L"))
    assert title.min() < 100 and title.max() > 200  # with its title: dark text on the light theme's background
    page.wait_for_function("document.querySelector('.st-key-fig_field .js-plotly-plot') !== null", timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
    inspector.scroll_into_view_if_needed()
    _shot(page, "04-inspector.png")

    with page.expect_download(timeout=60_000) as download:  # the trace, generated on click
        page.get_by_role("button", name="Download the trace").click()
    arrays, metadata = trace_export.load(Path(download.value.path()).read_bytes())
    assert metadata["iterations"] == "3" and arrays["couplings"].shape == (3, 1152, 10)
    assert np.allclose(arrays["couplings"].sum(axis=-1), 1.0, atol=1e-5)

    page.get_by_text("Votes and agreement", exact=True).first.click()  # the votes view
    page.locator(".st-key-fig_votes .js-plotly-plot").wait_for(timeout=60_000)
    _wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    page.locator(".st-key-fig_votes .js-plotly-plot").last.scroll_into_view_if_needed()
    _shot(page, "05-votes.png")

    page.get_by_text("The same pose decoded on the server").click()  # the server's view of the same pose
    _wait_idle(page)
    page.wait_for_function(f"({POSE_FIGURE_Z})() !== null", timeout=30_000)
    page.wait_for_function("window.__capsvizLive && window.__capsvizLive.frames > 0", timeout=60_000)
    before = page.evaluate(POSE_FIGURE_Z)
    before_live = _live_pixels(page)
    frames = page.evaluate("window.__capsvizLive.frames")
    slider = live.nth(0)
    slider.scroll_into_view_if_needed()
    track = slider.bounding_box()
    x, y = track["x"] + track["width"] / 2, track["y"] + track["height"] / 2  # the thumb, at 0
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + track["width"] / 4, y, steps=5)  # drag dim 0 to about +0.12
    assert page.evaluate("window.__capsvizLive.frames") > frames  # redrawn in the page while dragging
    assert _live_pixels(page) != before_live
    page.mouse.up()
    page.wait_for_function(f"({POSE_FIGURE_Z})() !== {before!r}", timeout=30_000)  # reported back to Python
    _wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0
    _shot(page, "03-pose-slider.png")
    assert not errors, errors


def test_closing_the_tab_stops_its_training(browser, synthetic_root, tmp_path):
    """For real: a training whose tab closed stops (here after 3 s, by env)."""
    runs = tmp_path / "runs"
    env = {**os.environ, "CAPSVIZ_RUNS": str(runs), "CAPSVIZ_DATA": str(synthetic_root)}
    serving = _serve({**env, "CAPSVIZ_ABANDONED_SECONDS": "3"})
    url = next(serving)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_role("tab", name="Train").click()
        page.get_by_text("Custom", exact=True).click()  # the presets fix the epochs
        _wait_idle(page)
        epochs = page.get_by_label("Epochs")
        epochs.fill("100")
        epochs.press("Enter")
        _wait_idle(page)
        page.get_by_role("button", name="Start training").click()
        deadline = time.time() + 180
        while not list(runs.glob("*/log.json")) and time.time() < deadline:  # the first epoch is saved
            time.sleep(0.5)
        (log,) = runs.glob("*/log.json")
        page.close()  # the tab goes; nothing else tells the server
        epoch_seconds = json.loads(log.read_text())[0]["seconds"]
        time.sleep(3 + 2 * epoch_seconds + 5)  # the grace, then at most the epoch under way
        stopped_at = len(json.loads(log.read_text()))
        time.sleep(max(10, 3 * epoch_seconds))  # three more epochs, had it kept training
        assert len(json.loads(log.read_text())) == stopped_at < 100
    finally:
        next(serving, None)


def _ready(page, server) -> None:
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Draw a digit").first.wait_for(timeout=90_000)
    _wait_idle(page)


def test_desktop_canvas_tools_and_kept_expander(browser, server):
    """At 1440x900: no toolbar covers the caption, Clear keeps an open expander open."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _ready(page, server)
    caption = page.get_by_text("Undo and Clear are under it").bounding_box()
    canvas = page.locator(".st-key-canvas canvas.draw").first.bounding_box()
    page.mouse.move(canvas["x"] + 40, canvas["y"] + 40)  # hovering shows no toolbar over the caption
    page.wait_for_timeout(500)
    assert canvas["y"] >= caption["y"] + caption["height"] - 1, (canvas, caption)
    assert page.locator(".st-key-canvas_undo button").bounding_box()["y"] > canvas["y"] + canvas["height"] - 1
    _draw(page, 3)
    _wait_idle(page)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)
    _shot(page, "desktop-1440x900.png")
    page.get_by_text("The paper's Figure 4").click()
    _wait_idle(page)
    page.get_by_text("rows are dimensions").wait_for(timeout=60_000)
    page.locator(".st-key-canvas_clear button").click()
    no_prediction = "document.querySelectorAll('[data-testid=\"stMetricValue\"]').length === 0"
    page.wait_for_function(no_prediction, timeout=60_000)  # under load the rerun can start after _wait_idle's pause
    _wait_idle(page)
    _draw(page, 6)
    _wait_idle(page)
    page.get_by_text("rows are dimensions").wait_for(timeout=60_000)  # the expander came back open
    page.get_by_text("Test error after each epoch").click()  # the shipped card's curve, in the sidebar
    page.get_by_text("The axis starts at 0").wait_for(timeout=60_000)
    _wait_idle(page)
    _shot(page, "sidebar-curve-1440x900.png")
    assert not errors, errors


def test_phone_layout(browser, server):
    """At 390x844: the prediction above the fold, routing iterations on the page, sliders in order."""
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _ready(page, server)
    _draw(page, 3)
    _wait_idle(page)
    metric = page.get_by_test_id("stMetricValue").first
    metric.wait_for(timeout=60_000)
    box = metric.bounding_box()
    assert box["y"] + box["height"] <= 844, box  # visible without scrolling
    _shot(page, "phone-390x844.png")
    iterations = page.locator(".st-key-below_inputs [data-testid='stSlider']")
    assert iterations.count() == 1 and "Routing iterations" in iterations.inner_text()
    names = page.locator(".st-key-live_decoder .slider .top > span:first-child")
    tops = [names.nth(d).bounding_box()["y"] for d in range(16)]
    assert [names.nth(d).inner_text() for d in range(16)] == [f"dim {d}" for d in range(16)]
    assert tops == sorted(tops)  # read top to bottom, 0..15
    assert page.locator(".st-key-live_decoder canvas.pert").bounding_box()["y"] < tops[0]  # image first
    for key in ("fig_lengths", "fig_input", "fig_recon"):  # titles fit their chart
        fits = page.evaluate(
            """key => {
              const plot = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
              const title = plot.querySelector('.gtitle');
              if (!title) return true;
              return title.getBoundingClientRect().right <= plot.getBoundingClientRect().right + 1;
            }""",
            key,
        )
        assert fits, key
        page.locator(f".st-key-{key} .js-plotly-plot").hover()  # the toolbar shows on hover (or a tap)
        page.wait_for_timeout(300)
        assert not page.evaluate(TOOLBAR_OVER_TITLE, key), key
    assert not errors, errors


TOOLBAR_OVER_TITLE = """key => {
  const plot = document.querySelector('.st-key-' + key + ' .js-plotly-plot');
  const bar = plot.querySelector('.modebar'), title = plot.querySelector('.gtitle');
  if (!bar || !title) return false;
  const a = bar.getBoundingClientRect(), b = title.getBoundingClientRect();
  return a.width > 0 && a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
}"""


LAB_MOVED_Z = """() => {
  const plot = document.querySelector('.st-key-fig_lab_images .js-plotly-plot');
  return plot && plot.data ? JSON.stringify(plot.data[0].z) : null;
}"""


def _open_lab(page) -> None:
    page.get_by_role("tab", name="Claims lab").click()
    page.get_by_text("Sweep one transform").first.wait_for(timeout=90_000)
    _wait_idle(page)
    page.locator(".st-key-fig_lab_strip .js-plotly-plot").wait_for(timeout=60_000)


@pytest.mark.parametrize(
    "viewport, name",
    [((1440, 900), "lab-1440x900.png"), ((390, 844), "lab-phone-390x844.png")],
    ids=["desktop", "phone"],
)
def test_claims_lab_follows_the_drawing_and_its_sliders(browser, server, viewport, name):
    """The lab tab on the drawn digit: a rotation slider moves the input; Explore keeps the drawing meanwhile."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, has_touch=viewport[0] < 640)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _ready(page, server)
    _draw(page, 3)
    _wait_idle(page)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)
    _open_lab(page)
    for key in ("fig_lab_scores", "fig_lab_sweep", "fig_lab_poses"):
        assert page.locator(f".st-key-{key} .js-plotly-plot").count() == 1, key
    before = page.evaluate(LAB_MOVED_Z)
    thumb = page.locator(".st-key-lab_rotation input[type='range']")
    thumb.scroll_into_view_if_needed()
    thumb.focus()
    for _ in range(20):  # 20 degrees, by keyboard: the slider's own steps
        page.keyboard.press("ArrowRight")
    _wait_idle(page)
    page.wait_for_function(f"() => ({LAB_MOVED_Z})() !== {json.dumps(before)}", timeout=60_000)
    _wait_idle(page)  # each key press may have queued its own run
    assert page.locator(".st-key-lab_rotation [data-testid='stSliderThumbValue']").inner_text() == "20°"
    _shot(page, name)
    page.locator(".st-key-fig_lab_strip").evaluate("e => e.scrollIntoView({block: 'end'})")
    page.wait_for_timeout(500)
    _shot(page, name.replace("lab-", "lab-sweep-"))
    table = page.get_by_test_id("stTable").first  # the robustness table
    table.scroll_into_view_if_needed()
    cut = table.evaluate(
        "t => [...t.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1"
        " && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))"
    )  # the table scrolls inside its own box
    hinted = page.locator(".st-key-narrow_hint").first.is_visible()
    assert hinted == cut == (viewport[0] < 640), (hinted, cut)  # a phone is told to swipe; a desktop needs no hint
    page.get_by_role("tab", name="Explore").click()
    _wait_idle(page)
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)  # the drawing survived the detour
    assert not errors, errors


# --- every control survives tab switches; a link restores the whole view ----------------------------------------

CONTROLS = """keys => Object.fromEntries(keys.map(key => {
  const box = document.querySelector(`.st-key-${key}`);
  if (!box) return [key, null];
  const inside = (el, sel) => [...el.querySelectorAll(sel),  // and inside components' shadow roots
    ...[...el.querySelectorAll('*')].filter(e => e.shadowRoot).flatMap(e => inside(e.shadowRoot, sel))];
  const checked = box.querySelector('input[type=radio]:checked');
  const ranges = inside(box, 'input[type=range]').map(r => r.value);
  const field = box.querySelector('input[role=combobox], input[type=number]');
  const pressed = box.querySelector('button[aria-checked=true]');
  const shown = checked ? checked.closest('label').innerText.trim()
    : ranges.length ? ranges.join(',') : field ? field.value : pressed ? pressed.innerText.trim() : '?';
  return [key, shown];
}))"""
EXPLORE_CONTROLS = [
    "input_source", "sample_mode", "sample_digit", "routing_iters", "routing_iteration", "routing_digit",
    "routing_view", "inspect_capsule", "guide_stage", "pose_class", "live_decoder",
]  # fmt: skip
LAB_CONTROLS = [f"lab_{name}" for name in ("rotation", "scale_x", "scale_y", "shear", "shift_x", "shift_y")]
LAB_CONTROLS += ["lab_thickness", "lab_sweep_of", "lab_digit"]


def _choose(page, key: str, option: str) -> None:
    """Pick an option of the selectbox under `key`, as a user does: open it, type to filter, click the option."""
    _wait_idle(page)  # a rerun under way could redraw the list away
    box = page.locator(f".st-key-{key} input[role=combobox]")
    box.click()
    box.press_sequentially(option.split(" ")[0])
    page.get_by_role("option", name=option, exact=True).click()
    _wait_idle(page)


def _press(page, key: str, arrow: str, times: int, nth: int = 0) -> None:
    """Move the slider under `key` by its own steps from the keyboard."""
    thumb = page.locator(f".st-key-{key} input[type=range]").nth(nth)
    thumb.scroll_into_view_if_needed()
    thumb.focus()
    for _ in range(times):
        page.keyboard.press(arrow)
    _wait_idle(page)


def _picture(page) -> dict:
    """The prediction and what it was computed from, as the page shows them."""
    return page.evaluate("""() => ({
      prediction: document.querySelector('[data-testid=stMetricValue]')?.innerText,
      length: Array.from(document.querySelectorAll('[data-testid=stCaptionContainer]'))
        .map(e => e.innerText).find(t => t.startsWith('capsule ')),
      image: Array.from(document.querySelectorAll('[data-testid=stCaptionContainer]'))
        .map(e => e.innerText).find(t => t.startsWith('MNIST test image #')),
    })""")


def _drawn_controls(page, keys: list[str]) -> dict:
    """The controls' values once every one of them is drawn (a rerun draws sliders after radios)."""
    page.wait_for_function(f"!Object.values(({CONTROLS})({keys!r})).includes('?')", timeout=60_000)
    return page.evaluate(CONTROLS, keys)


def _lab_reading(page) -> str:
    return page.locator("p", has_text="routing iterations):").first.inner_text()


def _to_tab(page, name: str, ready: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.get_by_text(ready).first.wait_for(timeout=90_000)
    _wait_idle(page)


def _set_up_a_view(page) -> None:
    """An MNIST 7 chosen by class, read with 2 iterations, and every Explore and Claims lab control moved."""
    page.locator(".st-key-input_source").get_by_text("MNIST test image").click()
    _wait_idle(page)
    page.locator(".st-key-sample_mode").get_by_text("by class").click()
    _wait_idle(page)
    _choose(page, "sample_digit", "7")
    _press(page, "routing_iters", "ArrowLeft", 1)  # 3 -> 2
    _press(page, "routing_iteration", "ArrowLeft", 1)  # 2 -> 1
    _choose(page, "routing_digit", "3")
    capsule = page.locator(".st-key-inspect_capsule input")
    capsule.fill("500")
    capsule.press("Enter")
    page.locator(".st-key-inspector").wait_for(timeout=60_000)
    page.locator(".st-key-guide_stage button", has_text="PrimaryCaps").click()
    _wait_idle(page)
    _choose(page, "pose_class", "5")
    _press(page, "live_decoder", "ArrowRight", 4, nth=2)  # dim 2 to +0.04, reported on change
    page.wait_for_function("location.search.includes('offsets=')", timeout=60_000)  # the page reported it
    _wait_idle(page)
    _to_tab(page, "Claims lab", "Sweep one transform")
    _press(page, "lab_rotation", "ArrowRight", 5)
    _press(page, "lab_shift_y", "ArrowLeft", 2)
    _choose(page, "lab_sweep_of", "shear (x += shear·y)")
    _choose(page, "lab_digit", "4")


LINKED = {  # what the view set up below puts in the address bar, besides the image index and the offsets
    "src": "mnist", "iters": "2", "view": "couplings", "iteration": "1", "route": "3", "capsule": "500",
    "stage": "primarycaps", "pose": "5", "rotation": "5", "shift_y": "-2", "sweep": "shear", "sweep_digit": "4",
}  # fmt: skip


def test_three_tab_round_trips_and_a_link_keep_every_control_and_the_prediction(browser, server):
    """Explore -> Claims lab -> Explore three times: every control shows what it showed, and the numbers beside
    them are the same; then the address bar, opened in a new session, shows the same view on both tabs."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _ready(page, server)
    _set_up_a_view(page)
    lab = _drawn_controls(page, LAB_CONTROLS)
    reading = _lab_reading(page)
    assert "(2 routing iterations)" in reading and lab["lab_rotation"] == "5" and lab["lab_digit"] == "4"
    _to_tab(page, "Explore", "The network, stage by stage")
    explore, picture = _drawn_controls(page, EXPLORE_CONTROLS), _picture(page)
    assert explore["sample_digit"] == "7" and explore["routing_iters"] == "2" and explore["routing_digit"] == "3"
    assert explore["live_decoder"].split(",")[2] == "0.04" and picture["image"].endswith("labelled 7")
    for trip in range(3):
        _to_tab(page, "Claims lab", "Sweep one transform")
        assert (_drawn_controls(page, LAB_CONTROLS), _lab_reading(page)) == (lab, reading), trip
        _to_tab(page, "Explore", "The network, stage by stage")
        assert (_drawn_controls(page, EXPLORE_CONTROLS), _picture(page)) == (explore, picture), trip

    link = page.url
    named = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert named | LINKED == named  # each part the caption names, as set above
    assert named["offsets"].startswith("0,0,0.04,")
    again = browser.new_page(viewport={"width": 1440, "height": 900})
    again.on("pageerror", lambda exc: errors.append(str(exc)))
    again.goto(link, wait_until="domcontentloaded")
    again.get_by_text("The network, stage by stage").first.wait_for(timeout=90_000)
    again.wait_for_function("window.__capsvizLive && window.__capsvizLive.frames > 0", timeout=60_000)
    _wait_idle(again)
    shown = _drawn_controls(again, EXPLORE_CONTROLS)
    assert {k: v for k, v in shown.items() if k not in ("sample_mode", "sample_digit")} == {
        k: v for k, v in explore.items() if k not in ("sample_mode", "sample_digit")
    }  # the link names the image itself, not how it was picked
    assert _picture(again) == picture
    _to_tab(again, "Claims lab", "Sweep one transform")
    assert (_drawn_controls(again, LAB_CONTROLS), _lab_reading(again)) == (lab, reading)
    assert "tab=lab" in again.url
    again.reload(wait_until="domcontentloaded")  # a link straight to the lab: the same lab
    again.get_by_text("Sweep one transform").first.wait_for(timeout=90_000)
    _wait_idle(again)
    assert (_drawn_controls(again, LAB_CONTROLS), _lab_reading(again)) == (lab, reading)
    assert not errors, errors


def test_a_malformed_link_names_the_bad_parts_and_loads_the_rest(browser, server):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.goto(f"{server}/?src=mnist&i=2&iters=9&route=x&stage=primarycaps", wait_until="domcontentloaded")
    warning = page.locator(".st-key-share_problems")
    warning.wait_for(timeout=90_000)
    _wait_idle(page)
    text = warning.inner_text()
    assert "iters" in text and "route" in text and "stage" not in text  # named: only the parts it could not read
    read = ["input_source", "routing_iters", "guide_stage"]
    shown = _drawn_controls(page, read)
    assert shown["input_source"] == "MNIST test image" and shown["routing_iters"] == "3"
    assert shown["guide_stage"].startswith("PrimaryCaps")
    assert _picture(page)["image"].startswith("MNIST test image #2,")


@pytest.mark.parametrize(
    "viewport, name",
    [((1440, 900), "two-digits-1440x900.png"), ((390, 844), "two-digits-phone-390x844.png")],
    ids=["desktop", "phone"],
)
def test_the_two_digits_tab_reads_a_pair_and_the_drawing_and_explore_keeps_it(browser, server, viewport, name):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, has_touch=viewport[0] < 640)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _ready(page, server)
    _draw(page, 7)
    _wait_idle(page)
    said = page.get_by_test_id("stMetricValue").first.inner_text()
    _to_tab(page, "Two digits", "Where routing sends the votes")
    for key in ("two_pair_figure", "two_scores_figure", "two_couplings"):
        page.locator(f".st-key-{key} .js-plotly-plot").wait_for(timeout=60_000)
    assert "CapsNet trained without routing" in page.get_by_test_id("stTable").first.inner_text()
    caption = page.get_by_text("Test pair #0:").first.inner_text()
    page.get_by_role("button", name="Random pair").click()
    _wait_idle(page)
    assert page.get_by_text("Test pair #").first.inner_text() != caption or "pair=0" in page.url
    assert "tab=two" in page.url and "pair=" in page.url
    assert page.evaluate(CHART_TEXTS_IN_THE_WAY) == []  # panel titles side by side on a phone, none under the toolbar
    _shot(page, name)
    pair = page.get_by_text("Test pair #").first.inner_text()
    page.reload(wait_until="domcontentloaded")  # the address bar's link reopens the tab on the same pair
    page.get_by_text("Where routing sends the votes").first.wait_for(timeout=90_000)
    _wait_idle(page)
    assert page.get_by_text("Test pair #").first.inner_text() == pair
    page.locator(".st-key-two_source").get_by_text("The Explore tab's input").click()
    _wait_idle(page)
    page.get_by_text("at the centre of the 36x36 two-digit canvas").first.wait_for(timeout=60_000)
    _to_tab(page, "Explore", "The network, stage by stage")
    assert page.get_by_test_id("stMetricValue").first.inner_text() == said  # the drawing is still read
    assert not errors, errors


@pytest.mark.parametrize(
    "viewport, name",
    [((1440, 900), "two-digits-drawn-1440x900.png"), ((390, 844), "two-digits-drawn-phone-390x844.png")],
    ids=["desktop", "phone"],
)
def test_two_digits_drawn_with_two_pens_are_both_named(browser, server, viewport, name):
    """A 1 in red and a 0 in blue over it, on the Two digits tab's own canvas: the CapsNet names both."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, has_touch=viewport[0] < 640)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/?tab=two&two_src=draw", wait_until="domcontentloaded")
    page.get_by_text("Draw one digit with the red pen").first.wait_for(timeout=90_000)
    _wait_idle(page)
    _draw(page, 1, key="two_canvas")
    _wait_idle(page)
    page.locator(".st-key-two_pen").get_by_text("second digit (blue)").click()
    _wait_idle(page)
    _draw(page, 0, key="two_canvas")
    _wait_idle(page)
    page.get_by_text("Where routing sends the votes").first.wait_for(timeout=60_000)
    cells = page.get_by_test_id("stTable").first.locator("tbody tr").first.locator("td")
    cells.nth(1).wait_for(timeout=60_000)  # the table a rerun draws again
    first_row = cells.all_inner_texts()
    assert first_row[0].strip() == "CapsNet" and set(first_row[1].strip().split(" and ")) == {"0", "1"}, first_row
    _shot(page, name)
    assert not errors, errors


TRUNCATED = """() => [...document.querySelectorAll('[class*="st-key-gallery_pick_"] button')].map(b => {
  const cut = [...b.querySelectorAll('*')].some(e => getComputedStyle(e).textOverflow === 'ellipsis'
    && e.scrollWidth > e.clientWidth);
  return cut ? b.innerText : null;  // an element narrower than its text: the label ends in an ellipsis
})"""


CUT_BUTTONS = """() => [...document.querySelectorAll('button [data-testid="stMarkdownContainer"]')].filter(e => {
  const text = document.createRange(), width = e.getBoundingClientRect().width;
  text.selectNodeContents(e);
  return width > 0 && text.getBoundingClientRect().width > width + 0.5;  // a pixel over: Streamlit cuts it to "…"
}).map(e => e.innerText)"""
CHART_TEXTS_IN_THE_WAY = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(g => g.getBoundingClientRect().height > 0).flatMap(g => {
    const box = g.getBoundingClientRect(), bar = g.querySelector('.modebar').getBoundingClientRect();
    return [...g.querySelectorAll('.gtitle, .annotation-text, .xtitle')].filter(t => t.textContent.trim()).map(t => {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 1 || r.right > box.right + 1) return `cut: ${t.textContent}`;
      const under = r.top < bar.bottom - 1 && r.bottom > bar.top && r.right > bar.left && r.left < bar.right;
      return under ? `under the toolbar: ${t.textContent}` : null;
    }).filter(Boolean);
  })"""


def test_the_mistakes_gallery_shows_whole_labels_on_a_projector(browser, server):
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    _ready(page, server)
    page.locator(".st-key-input_source").get_by_text("MNIST test image").click()
    _wait_idle(page)
    page.locator(".st-key-sample_mode").get_by_text("misclassified").click()
    _wait_idle(page)
    page.get_by_role("button", name="Show all of this model's mistakes").click()
    page.locator('[class*="st-key-gallery_pick_"] button').first.wait_for(timeout=120_000)
    _wait_idle(page)
    shown = page.evaluate(TRUNCATED)
    assert shown and not [label for label in shown if label], shown  # "9→4", never "9…"


# --- a lesson: the page's timer that plays the routing, a clicker's keys, a real download ----------------------

ITERATION = ".st-key-routing_iteration [data-testid='stSliderThumbValue']"
CHART_TEXT = """key => Math.min(...[...document.querySelectorAll(`.st-key-${key} .js-plotly-plot text`)]
  .filter(t => t.textContent.trim()).map(t => parseFloat(getComputedStyle(t).fontSize)))"""


def _open_fresh(browser, server, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_text("Draw a digit").first.wait_for(timeout=90_000)
    _wait_idle(page)
    return page, errors


def _example(page, title: str) -> str:
    page.get_by_role("button", name=title).click()
    page.get_by_test_id("stMetricValue").first.wait_for(timeout=60_000)
    _wait_idle(page)
    return page.get_by_test_id("stMetricValue").first.inner_text().strip()


def test_an_example_plays_its_routing_and_downloads_its_capsules(browser, server):
    page, errors = _open_fresh(browser, server, 1440, 900)
    _shot(page, "first-screen-1440x900.png")
    assert _example(page, "A clean 3") == "3"
    page.wait_for_timeout(1500)  # the canvas reports the example it drew: one more run
    _wait_idle(page)
    assert page.locator(ITERATION).inner_text().strip() == "3"  # the iteration the views show (it read 1 at times)
    page.get_by_role("button", name="Play").click()
    seen = set()
    for _ in range(60):  # one step every STEP_SECONDS, plus a rerun each
        page.wait_for_timeout(250)
        seen.add(page.locator(ITERATION).inner_text().strip())
        if seen >= {"1", "2"} and page.get_by_role("button", name="Play").count():
            break
    _wait_idle(page)
    assert seen >= {"1", "2"} and page.locator(ITERATION).inner_text().strip() == "3", seen
    page.locator(".st-key-routing_play").scroll_into_view_if_needed()
    _shot(page, "play-1440x900.png")
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Capsules (CSV)").click()
    assert download.value.suggested_filename == "capsviz-capsules-3-r3.csv"
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0] == table_export.header(table_export.CAPSULE_COLUMNS, 16) and len(rows) == 11
    assert [row[0] for row in rows[1:] if row[2] == "1"] == ["3"]
    page.get_by_role("button", name="Examples").click()  # a second example: the routing follows its prediction
    page.get_by_role("button", name="A thin 1").click()
    _wait_idle(page)
    page.wait_for_timeout(1500)  # the canvas redraws the example and reports it: one more run
    _wait_idle(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text().strip() == "1"
    assert not page.get_by_role("button", name="A clean 3").is_visible()  # the popover folded off the prediction
    assert page.locator(".st-key-routing_digit input").first.input_value() == "1" and "route=1" in page.url
    assert page.get_by_text("the mean coupling to digit 1 went").count() == 1  # the charts' digit, as shown
    assert page.locator("[data-testid='stException']").count() == 0
    assert not errors, errors


def test_presentation_mode_follows_a_clicker_with_projector_sized_charts(browser, server):
    page, errors = _open_fresh(browser, server, 1440, 900)
    _example(page, "An ambiguous 4/9")
    page.get_by_text("Presentation mode").first.click()
    page.get_by_role("button", name="Next").wait_for(timeout=60_000)
    _wait_idle(page)
    page.evaluate("document.activeElement.blur()")  # the clicker's first press, with the toggle no longer focused
    page.keyboard.press("PageDown")
    page.locator(".st-key-fig_lengths .js-plotly-plot").wait_for(timeout=60_000)
    _wait_idle(page)
    assert page.evaluate(CHART_TEXT, "fig_lengths") >= 14
    _shot(page, "present-lengths-1440x900.png")
    page.keyboard.press("ArrowRight")
    page.locator(".st-key-coupling_tiles canvas").wait_for(timeout=60_000)
    page.locator(".st-key-fig_overlay .js-plotly-plot").wait_for(timeout=60_000)
    _wait_idle(page)
    assert page.evaluate(CUT_BUTTONS) == []  # "Download the trace", never "Download the tr…"
    assert page.evaluate(CHART_TEXTS_IN_THE_WAY) == []  # the overlay's subtitle whole ("…0/36 tied (open rings)")
    page.keyboard.press("PageUp")
    _wait_idle(page)
    assert page.locator(".st-key-fig_lengths .js-plotly-plot").count() == 1
    page.get_by_role("button", name="Leave").click()
    page.get_by_role("tab", name="Claims lab").wait_for(timeout=60_000)
    assert not errors, errors


def test_on_a_phone_presentation_mode_names_its_screen_and_uniform_vs_routed_fits(browser, server):
    page, errors = _open_fresh(browser, server, 390, 844)
    _example(page, "An ambiguous 4/9")
    compare = page.get_by_text("Uniform vs routed", exact=True).first
    compare.evaluate("e => e.scrollIntoView({block: 'center'})")  # clear of the page's sticky header
    compare.click()
    page.get_by_text("with uniform couplings").first.wait_for(timeout=60_000)
    _wait_idle(page)
    _shot(page, "compare-phone-390x844.png")
    assert page.locator(ITERATION).count() == 0  # two fixed counts: no iteration slider to mislead
    page.get_by_text("Iterations shown: 1 and 3, side by side.").wait_for(timeout=30_000)
    page.get_by_test_id("stExpandSidebarButton").click()  # a phone folds the sidebar away
    page.get_by_text("Presentation mode").first.click()
    page.get_by_role("button", name="Next").wait_for(timeout=60_000)
    _wait_idle(page)
    page.get_by_test_id("stSidebarCollapseButton").locator("button").click()  # it lies over the page
    canvas = page.locator(".st-key-canvas canvas.draw").first.bounding_box()
    assert canvas["y"] + canvas["height"] <= 844, canvas  # the Input screen: the canvas first, the lesson under it
    page.get_by_role("button", name="Next").click()
    page.get_by_text("2 / 5 · Capsule lengths").wait_for(timeout=60_000)
    _wait_idle(page)
    _shot(page, "present-phone-390x844.png")
    width = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollWidth")
    assert width <= 390, width  # nothing wider than the phone
    assert page.evaluate(CHART_TEXTS_IN_THE_WAY) == []  # titles wrapped, clear of the toolbar a phone always shows
    assert not errors, errors


def test_on_a_phone_the_prediction_stays_above_the_fold_after_an_example(browser, server):
    page, errors = _open_fresh(browser, server, 390, 844)
    page.get_by_role("button", name="A rotated 7").wait_for(state="visible", timeout=30_000)  # the first screen
    _shot(page, "first-screen-phone-390x844.png")
    assert _example(page, "A rotated 7") == "7"
    page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollTo(0, 0)")  # the top of the page
    page.wait_for_timeout(300)
    box = page.get_by_test_id("stMetricValue").first.bounding_box()
    assert box["y"] + box["height"] <= 844, box
    _shot(page, "lesson-phone-390x844.png")
    assert not errors, errors
