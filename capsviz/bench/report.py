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


def markdown(results: dict) -> str:
    """The results as a Markdown table: measure, capsviz, reference, ratio, target, met."""
    rows = []
    device = results["device"]

    def row(measure, value, reference="", ratio="", target_key=None, raw=None):
        target, met = "", ""
        if target_key:
            text, check = TARGETS[target_key]
            target, met = text, ("yes" if check(raw) else "**no**")
        rows.append(f"| {measure} | {value} | {reference} | {ratio} | {target} | {met} |")

    training = results.get("training")
    if training:
        methods = training["methods"]
        ref = methods.get("reference")
        batch = training["batch_size"]
        for name, m in methods.items():
            if name.startswith("reference"):
                continue
            ratio = m.get("vs_reference")
            row(
                f"training, {name}, images/s (batch {batch})",
                f"{m['images_per_s']:.1f}",
                f"{ref['images_per_s']:.1f}" if ref else "",
                f"{ratio:.2f}x" if ratio else "",
                f"{device}_training_ratio" if name == "capsviz" and ratio else None,
                ratio,
            )
        other_references = {
            "reference (model only)": "training, capsviz vs the reference's model alone (batch on the device)",
            "reference (freed memory kept)": (
                "training, capsviz vs the reference with freed memory kept as capsviz keeps it"
            ),
        }
        for name, label in other_references.items():
            if name in methods:
                if name == "reference (freed memory kept)" and not methods[name]["freed_memory_kept"]:
                    label += " (glibc refused the setting: not kept)"
                ours, theirs = methods["capsviz"]["images_per_s"], methods[name]["images_per_s"]
                row(label, f"{ours:.1f}", f"{theirs:.1f}", f"{ours / theirs:.2f}x")
        capsviz = methods["capsviz"]
        kind = "measured" if capsviz["epoch_measured"] else "estimated from the steps"
        row(
            f"training, time per epoch (60,000 images, {kind})",
            f"{capsviz['epoch_seconds']:.1f} s",
            f"{ref['epoch_seconds']:.1f} s" if ref else "",
            "",
            "cuda_epoch" if device == "cuda" and capsviz["epoch_measured"] else None,
            capsviz["epoch_seconds"],
        )
        for name, seconds in training.get("compile_seconds", {}).items():
            row(f"training, {name}: first step incl. torch.compile", f"{seconds:.1f} s")
    kernels = results.get("kernels")
    if kernels:
        for name, label, (ours, theirs) in (
            ("primarycaps_weight_grad", "PrimaryCaps weight gradient, polyphase vs {}", ("polyphase", "library")),
            ("primarycaps_input_grad", "PrimaryCaps input gradient, polyphase vs {}", ("polyphase", "library")),
            ("conv1_forward_backward", "conv1 forward + backward, im2col vs {} NCHW", ("im2col", "NCHW")),
            ("conv1_forward_backward", "conv1 forward + backward, im2col vs {} NHWC", ("im2col", "NHWC")),
        ):
            label = label.format("oneDNN" if device == "cpu" else "cuDNN")
            k = kernels[name]
            row(label, f"{k[ours] * 1000:.0f} ms", f"{k[theirs] * 1000:.0f} ms", f"{k[theirs] / k[ours]:.2f}x")
    interaction = results.get("interaction")
    if interaction and "skipped" in interaction:
        row("interaction", f"skipped: {interaction['skipped']}")
    elif interaction:
        labels = {
            "preprocess": "drawing → 28x28 (to_mnist)",
            "inference_with_trace": "one image through the model with the full routing trace",
            "routing_xray": "routing X-ray of one image, 5 iterations (once per input)",
            "decode": "one decode (a pose-slider move, outside Streamlit)",
            "figures": "all Explore figures a new drawing draws (default routing view)",
            "routing_figures": "the other routing views' figures and the capsule inspector's",
            "figure4_grid": "Figure-4 grid: 176 decodes + PNG",
        }
        for key, label in labels.items():
            if key not in interaction:
                continue
            target = key if key in TARGETS and device == "cpu" else None  # the targets are for the CPU
            row(label, f"{interaction[key] * 1000:.1f} ms", target_key=target, raw=interaction[key])
    app = results.get("app")
    if app and "skipped" not in app:
        row(
            "app: new drawing → lengths, routing, poses (full script rerun)",
            f"{app['stroke_full_rerun'] * 1000:.0f} ms",
            target_key="stroke_full_rerun",
            raw=app["stroke_full_rerun"],
        )
        row(
            "app: pose-slider move (the fragment's server-side run)",
            f"{app['slider_fragment'] * 1000:.0f} ms",
            target_key="slider_fragment",
            raw=app["slider_fragment"],
        )
        row("app: pose-slider move as a full script rerun (upper bound)", f"{app['slider_full_rerun'] * 1000:.0f} ms")
        if "lab_slider_fragment" in app:
            models = app["lab_models"]
            row(
                f"app: lab slider move (server side: the lab fragment; {models})",
                f"{app['lab_slider_fragment'] * 1000:.0f} ms",
                target_key="lab_slider_fragment",
                raw=app["lab_slider_fragment"],
            )
            row(
                f"app: lab slider move that redoes the sweep (server side; {models})",
                f"{app['lab_resweep_fragment'] * 1000:.0f} ms",
            )
    elif app:
        row("app", f"skipped: {app['skipped']}")
    browser = results.get("browser")
    if browser and "skipped" not in browser:
        for key, label in (
            ("stroke_to_prediction_ms", "browser: mouse-up after a stroke → prediction shown"),
            ("stroke_to_all_figures_ms", "browser: mouse-up after a stroke → last figure updated"),
            ("slider_to_image_ms", "browser: live pose-slider input → decoded image drawn"),
        ):
            target = key if device == "cpu" else None
            value = browser[key]
            row(f"{label} (median, {browser['viewport']})", f"{value:.0f} ms", target_key=target, raw=value)
    elif browser:
        row("browser", f"skipped: {browser['skipped']}")
    lesson = results.get("lesson")
    if lesson and "skipped" not in lesson:
        row(
            f"app: Train tab's {lesson['preset']} ({lesson['training_images']:,} images, {lesson['epochs']} epoch(s), "
            f"{lesson['test_images']:,} test images: {lesson['test_accuracy']:.1%}), Start to saved run",
            f"{lesson['seconds']:.0f} s",
        )
    elif lesson:
        row("lesson", f"skipped: {lesson['skipped']}")
    header = [
        f"{results['date'][:10]} · {results['hardware']} · torch {results['torch']} · `{results['command']}`",
        "",
        "| measure | capsviz | reference | ratio | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    return "\n".join(header + rows)
