"""The benchmark's results as a Markdown table, each row checked against capsviz's speed target for it."""

from __future__ import annotations

TARGETS = {  # what the app and training should meet (docs/benchmarks.md): (text, check on the measured value)
    "cpu_training_ratio": ("≥ 3x reference", lambda v: v >= 3.0),
    "cuda_training_ratio": ("≥ 10x reference", lambda v: v >= 10.0),
    "cuda_epoch": ("≤ 3 s", lambda v: v <= 3.0),
    "inference_with_trace": ("≤ 30 ms", lambda v: v <= 0.030),
    "decode": ("≤ 2 ms", lambda v: v <= 0.002),
    "figures": ("≤ 50 ms", lambda v: v <= 0.050),
    "slider_fragment": ("≤ 100 ms", lambda v: v <= 0.100),
    "lab_slider_fragment": ("< 300 ms", lambda v: v < 0.300),
    "stroke_full_rerun": ("≤ 300 ms", lambda v: v <= 0.300),
    "stroke_to_prediction_ms": ("≤ 300 ms", lambda v: v <= 300),
    "stroke_to_all_figures_ms": ("≤ 1000 ms", lambda v: v <= 1000),
    "slider_to_image_ms": ("≤ 50 ms", lambda v: v <= 50),
}


OTHER_REFERENCES = {
    "reference (model only)": "training, capsviz vs the reference's model alone (batch on the device)",
    "reference (freed memory kept)": "training, capsviz vs the reference with freed memory kept as capsviz keeps it",
}
KERNELS = (
    ("primarycaps_weight_grad", "PrimaryCaps weight gradient, polyphase vs {}", ("polyphase", "library")),
    ("primarycaps_input_grad", "PrimaryCaps input gradient, polyphase vs {}", ("polyphase", "library")),
    ("conv1_forward_backward", "conv1 forward + backward, im2col vs {} NCHW", ("im2col", "NCHW")),
    ("conv1_forward_backward", "conv1 forward + backward, im2col vs {} NHWC", ("im2col", "NHWC")),
)
INTERACTION = {
    "preprocess": "drawing → 28x28 (to_mnist)",
    "inference_with_trace": "one image through the model with the full routing trace",
    "routing_xray": "routing X-ray of one image, 5 iterations (once per input)",
    "decode": "one decode (a pose-slider move, outside Streamlit)",
    "figures": "all Explore figures a new drawing draws (default routing view)",
    "routing_figures": "the other routing views' figures and the capsule inspector's",
    "figure4_grid": "Figure-4 grid: 176 decodes + PNG",
}
BROWSER = {
    "stroke_to_prediction_ms": "browser: mouse-up after a stroke → prediction shown",
    "stroke_to_all_figures_ms": "browser: mouse-up after a stroke → last figure updated",
    "slider_to_image_ms": "browser: live pose-slider input → decoded image drawn",
}


def markdown(results: dict) -> str:
    """The results as a Markdown table: measure, capsviz, reference, ratio, target, met; a row per skipped section."""
    device = results["device"]
    rows = []
    for name, section in SECTIONS.items():
        part = results.get(name)
        if part and "skipped" in part:
            rows.append(_row(name, f"skipped: {part['skipped']}"))
        elif part:
            rows += section(part, device)
    header = [
        f"{results['date'][:10]} · {results['hardware']} · torch {results['torch']} · `{results['command']}`",
        "",
        "| measure | capsviz | reference | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    return "\n".join(header + rows)


def _row(measure, value, reference="", ratio="", target_key=None, raw=None) -> str:
    target, met = "", ""
    if target_key:
        text, check = TARGETS[target_key]
        target, met = text, ("yes" if check(raw) else "**no**")
    return f"| {measure} | {value} | {reference} | {ratio} | {target} | {met} |"


def _training(training: dict, device: str) -> list[str]:
    methods, batch = training["methods"], training["batch_size"]
    ref, capsviz = methods.get("reference"), methods["capsviz"]
    rows = []
    for name, m in methods.items():
        if name.startswith("reference"):
            continue
        ratio = m.get("vs_reference")
        rows.append(
            _row(
                f"training, {name}, images/s (batch {batch})",
                f"{m['images_per_s']:.1f}",
                f"{ref['images_per_s']:.1f}" if ref else "",
                f"{ratio:.2f}x" if ratio else "",
                f"{device}_training_ratio" if name == "capsviz" and ratio else None,
                ratio,
            )
        )
    for name, label in OTHER_REFERENCES.items():
        if name in methods:
            if name == "reference (freed memory kept)" and not methods[name]["freed_memory_kept"]:
                label += " (glibc refused the setting: not kept)"
            ours, theirs = capsviz["images_per_s"], methods[name]["images_per_s"]
            rows.append(_row(label, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}x"))
    kind = "measured" if capsviz["epoch_measured"] else "estimated from the steps"
    rows.append(
        _row(
            f"training, time per epoch (60,000 images, {kind})",
            f"{capsviz['epoch_seconds']:.1f} s",
            f"{ref['epoch_seconds']:.1f} s" if ref else "",
            "",
            "cuda_epoch" if device == "cuda" and capsviz["epoch_measured"] else None,
            capsviz["epoch_seconds"],
        )
    )
    for name, seconds in training.get("compile_seconds", {}).items():
        rows.append(_row(f"training, {name}: first step incl. torch.compile", f"{seconds:.1f} s"))
    return rows


def _kernels(kernels: dict, device: str) -> list[str]:
    library = "oneDNN" if device == "cpu" else "cuDNN"
    rows = []
    for name, label, (ours, theirs) in KERNELS:
        k = kernels[name]
        rows.append(
            _row(
                label.format(library),
                f"{k[ours] * 1000:.0f} ms",
                f"{k[theirs] * 1000:.0f} ms",
                f"{k[theirs] / k[ours]:.2f}x",
            )
        )
    return rows


def _interaction(interaction: dict, device: str) -> list[str]:
    rows = []
    for key, label in INTERACTION.items():
        if key in interaction:
            target = key if key in TARGETS and device == "cpu" else None  # the targets are for the CPU
            rows.append(_row(label, f"{interaction[key] * 1000:.1f} ms", target_key=target, raw=interaction[key]))
    return rows


def _app(app: dict, device: str) -> list[str]:
    def ms(key: str) -> str:
        return f"{app[key] * 1000:.0f} ms"

    rows = [
        _row("app: new drawing → lengths, routing, poses (full script rerun)", ms("stroke_full_rerun"),
             target_key="stroke_full_rerun", raw=app["stroke_full_rerun"]),
        _row("app: pose-slider move (the fragment's server-side run)", ms("slider_fragment"),
             target_key="slider_fragment", raw=app["slider_fragment"]),
        _row("app: pose-slider move as a full script rerun (upper bound)", ms("slider_full_rerun")),
    ]  # fmt: skip
    if "lab_slider_fragment" in app:
        models = app["lab_models"]
        rows.append(
            _row(f"app: lab slider move (server side: the lab fragment; {models})", ms("lab_slider_fragment"),
                 target_key="lab_slider_fragment", raw=app["lab_slider_fragment"])
        )  # fmt: skip
        rows.append(
            _row(f"app: lab slider move that redoes the sweep (server side; {models})", ms("lab_resweep_fragment"))
        )
    if "present_rerun" in app:
        screens = ", ".join(f"{name} {seconds * 1000:.0f}" for name, seconds in app["present_rerun"].items())
        normal = f"the normal page's Explore {ms('normal_rerun')}, Claims lab {ms('normal_lab_rerun')}"
        rows.append(_row("app: a rerun in presentation mode, per screen (server side)", f"{screens} ms; {normal}"))
        rows.append(
            _row("app: new drawing in presentation mode (its Input screen) / on the normal page",
                 f"{ms('present_stroke_rerun')} / {ms('normal_stroke_rerun')}")
        )  # fmt: skip
    return rows


def _browser(browser: dict, device: str) -> list[str]:
    rows = []
    for key, label in BROWSER.items():
        target = key if device == "cpu" else None
        value = browser[key]
        rows.append(_row(f"{label} (median, {browser['viewport']})", f"{value:.0f} ms", target_key=target, raw=value))
    return rows


def _lesson(lesson: dict, device: str) -> list[str]:
    measure = (
        f"app: Train tab's {lesson['preset']} ({lesson['training_images']:,} images, {lesson['epochs']} epoch(s), "
        f"{lesson['test_images']:,} test images: {lesson['test_accuracy']:.1%}), Start to saved run"
    )
    return [_row(measure, f"{lesson['seconds']:.0f} s")]


SECTIONS = {  # in the table's order; each: (its part of the results, device) -> rows
    "training": _training,
    "kernels": _kernels,
    "interaction": _interaction,
    "app": _app,
    "browser": _browser,
    "lesson": _lesson,
}
