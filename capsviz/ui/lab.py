"""The Claims lab tab: move the Explore tab's input with sliders and watch CapsNet and a CNN side by side.

The input is the one the Explore tab shows (drawing, MNIST image or upload; it remembers it
here with `remember_input`), so the lab has no input widgets of its own. What it computes is
`capsviz.analysis.lab`'s; the body is a fragment, so a slider move reruns only the lab and times
itself (`state.LAB_SECONDS`, shown in the tab and read by `python -m capsviz.bench`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import streamlit as st

from capsviz import registry
from capsviz.analysis import lab
from capsviz.checkpoint import CheckpointError
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import to_float
from capsviz.figures import viz_lab
from capsviz.ui import share, state
from capsviz.ui.downloads import sweep_download
from capsviz.ui.inputs import ModelInput
from capsviz.ui.resources import LoadedModel, mnist_test, model_from_file
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain
from capsviz.ui.widgets import PLOT_CONFIG, for_screen

FALLBACK_INDEX = 0  # the MNIST test image shown before the Explore tab has an input
DEFAULT = lab.Transform()
SLIDERS = {  # name -> (step, format)
    "rotation": (1.0, "%.0f°"),
    "scale_x": (0.05, "%.2f"),
    "scale_y": (0.05, "%.2f"),
    "shear": (0.05, "%.2f"),
    "shift_x": (1.0, "%.0f px"),
    "shift_y": (1.0, "%.0f px"),
    "thickness": (0.25, "%.2f"),
}
THICKNESS_HELP = (
    "Applied before the affine map: +1 is a 3x3 grey dilation (each pixel takes its neighbourhood's maximum: strokes "
    "about 2 px thicker), -1 a 3x3 grey erosion (the minimum: thinner); values in between blend linearly with the "
    "input."
)
PAPER_AFFNIST = {"capsnet": 0.79, "cnn": 0.66}  # Sabour et al. 2017, section 5.2
PAPER_NOTE = (
    "The paper (Sabour et al. 2017, section 5.2) trained both models on MNIST digits placed at random on a 40x40 "
    f"background: a CapsNet with 99.23% on that expanded MNIST test set reached **{PAPER_AFFNIST['capsnet']:.0%}** "
    f"on affNIST, a CNN with a similar number of parameters and 99.22% only **{PAPER_AFFNIST['cnn']:.0%}**."
)
OURS_NOTE = (
    "capsviz's models and set differ: both models are trained with shifts of up to 2 pixels on the 28x28 frame, "
    "and the affNIST-like set "
    "is not affNIST: the same ranges of rotation, shear and scale, but on the 28x28 frame (not 40x40), with "
    "translations that keep the ink inside it and bilinear resampling (`capsviz/analysis/affine.py`). "
    "Compare the gap between the models, not the numbers."
)


def remember_input(source: ModelInput) -> None:
    """Called by the Explore tab with its current input: the lab transforms that one."""
    st.session_state[state.LAB_INPUT] = source


def lab_tab(loaded: LoadedModel, device: str) -> None:
    st.caption(
        "Test the paper's claims on one digit: move it with the sliders, then sweep one transform and watch both "
        "models' scores and the capsule's pose. The robustness table below measures the same on the test set."
    )
    baseline = lab_on_input(loaded, device)
    st.divider()
    robustness_table(loaded, baseline)


def lab_on_input(loaded: LoadedModel, device: str) -> LoadedModel | None:
    """The lab on the Explore tab's input (or a word on why there is none); returns the CNN baseline used."""
    baseline, problem = cnn_baseline(device)
    if problem:
        st.info(problem, icon=":material/info:")
    source, note = current_input()
    if source is None:
        st.info(note)
    else:
        lab_body(loaded, baseline, source, note)
    return baseline


def cnn_baseline(device: str) -> tuple[LoadedModel | None, str | None]:
    """The shipped CNN (or $CAPSVIZ_BASELINE), or (None, a plain message): the lab never needs one to work."""
    path = lab.baseline_checkpoint()
    if path is None:
        return None, "No CNN baseline shipped: only CapsNet is shown."
    try:
        loaded = model_from_file(path, device, f"CNN baseline ({path.name})")
    except (CheckpointError, OSError) as exc:
        return None, f"The CNN baseline could not be loaded ({plain(exc, MAX_MESSAGE_CHARS)}): only CapsNet is shown."
    mismatch = registry.mnist_mismatch(loaded.model.config)
    if registry.kind_of(loaded.model) != "cnn" or mismatch:
        why = plain(mismatch or f"it holds a {registry.kind_of(loaded.model)} model", MAX_MESSAGE_CHARS)
        return None, f"{plain(path.name)} is not a usable CNN baseline ({why}): only CapsNet is shown."
    return loaded, None


def current_input() -> tuple[ModelInput | None, str | None]:
    """The Explore tab's input, or MNIST test image #0 (saying so) before it has one."""
    source = st.session_state.get(state.LAB_INPUT)
    if source is not None and source.x is not None:
        return source, None
    split, _ = mnist_test()  # without MNIST, the Explore tab says why when a test image is asked for
    if split is None:
        return None, "Draw, pick or upload a digit on the Explore tab first: the lab moves that digit."
    x = to_float(split.images[FALLBACK_INDEX : FALLBACK_INDEX + 1])[0]  # (1, 28, 28)
    label = int(split.labels[FALLBACK_INDEX])
    fallback = ModelInput(x, label=label, index=FALLBACK_INDEX)
    return fallback, (
        f"The Explore tab has no digit yet: this is MNIST test image #{FALLBACK_INDEX} (labelled {label}). "
        "Draw, pick or upload one there and it shows here."
    )


def _reset() -> None:
    for name in lab.NAMES:
        state.put(state.LAB_PARAM.format(name), getattr(DEFAULT, name))


def _transform() -> lab.Transform:
    """The sliders, two to a row (phones read them in order); the ranges are the sweeps' (`lab.SWEEPS`)."""
    values = {}
    for i, name in enumerate(lab.NAMES):
        if i % 2 == 0:
            row = st.columns(2)
        step, fmt = SLIDERS[name]
        points = lab.SWEEPS[name]
        values[name] = state.widget(
            row[i % 2].slider,
            lab.LABELS[name],
            float(points[0]),
            float(points[-1]),
            step=step,
            format=fmt,
            key=state.LAB_PARAM.format(name),
            default=getattr(DEFAULT, name),
            help=THICKNESS_HELP if name == "thickness" else None,
        )
    st.button("Reset the transform", key=state.LAB_RESET, on_click=_reset, icon=":material/restart_alt:")
    return lab.Transform(**values)


def _routing_iters(loaded: LoadedModel) -> int:
    """The Explore tab's routing iterations (drawn there or not), else the model's own count."""
    iters = state.value(state.ROUTING_ITERS, loaded.model.config.routing_iters)
    return min(max(int(iters), 1), MAX_ROUTING_ITERS)


@st.fragment
def lab_body(loaded: LoadedModel, baseline: LoadedModel | None, source: ModelInput, note: str | None) -> None:
    start = time.perf_counter()
    if note:
        st.caption(note)
    iters = _routing_iters(loaded)
    images, controls, chart = st.columns([1, 1.3, 1.5])  # phones stack them: the picture first
    with controls:
        transform = _transform()
    name = state.value(state.LAB_SWEEP_OF, lab.NAMES[0])  # the sweep's chooser is drawn below
    now, along = _readings(loaded, baseline, source, transform, iters, name)
    caps_pred = int(now.capsnet[0].argmax())
    with images:
        pair = viz_lab.pair_figure(source.x[0].numpy(), now.images[0])
        st.plotly_chart(for_screen(pair), config=PLOT_CONFIG, key="fig_lab_images")
        lines = [f"CapsNet ({iters} routing iterations): **{caps_pred}**, length {now.capsnet[0, caps_pred]:.3f}"]
        if now.cnn is not None:
            cnn_pred = int(now.cnn[0].argmax())
            lines.append(f"CNN: **{cnn_pred}**, probability {now.cnn[0, cnn_pred]:.3f}")
        if source.label is not None:
            lines.append(f"True label: **{source.label}**")
        st.markdown("  \n".join(lines))
    with chart:
        scores = viz_lab.scores_figure(now.capsnet[0], _first(now.cnn))
        st.plotly_chart(for_screen(scores), config=PLOT_CONFIG, key="fig_lab_scores")
        st.caption(
            "Two different quantities on one 0-to-1 axis: a capsule's length (the ten need not sum to 1) and the "
            "CNN's softmax probability (the ten sum to 1)."
        )
    st.divider()
    _sweep(loaded, source, transform, iters, now, along)
    elapsed = time.perf_counter() - start
    st.session_state[state.LAB_SECONDS] = elapsed
    st.caption(f"This lab updated in {elapsed * 1000:.0f} ms on the server.")
    share.publish()  # the transform, sweep and digit, when only this fragment reran


def _first(scores: np.ndarray | None) -> np.ndarray | None:
    return None if scores is None else scores[0]


def _sweep(
    loaded: LoadedModel,
    source: ModelInput,
    transform: lab.Transform,
    iters: int,
    now: lab.Reading,
    along: lab.Reading,
) -> None:
    st.subheader("Sweep one transform")
    _default_digit(loaded, source, iters)
    controls = st.container(horizontal=True, key="lab_sweep_controls")
    name = state.widget(
        controls.selectbox,
        "Transform",
        lab.NAMES,
        format_func=lab.LABELS.get,
        key=state.LAB_SWEEP_OF,
        default=lab.NAMES[0],
        width=260,
    )
    digits = range(len(now.capsnet[0]))
    digit = state.widget(controls.selectbox, "Digit", digits, key=state.LAB_DIGIT, default=0, width=120)
    values = np.array(lab.SWEEPS[name])
    current = getattr(transform, name)
    label = lab.LABELS[name]
    _sweep_charts(values, now, along, digit, label=label, current=current)
    images = lab.reconstructions(loaded.model, along.poses, digit)  # (N, 28, 28)
    st.plotly_chart(
        for_screen(viz_lab.strip_figure(along.images, images, values, label=label)),
        config=PLOT_CONFIG,
        key="fig_lab_strip",
    )
    st.caption(
        f"Each column is one sweep point: the moved input and capsule {digit}'s pose decoded (the other capsules "
        "masked), whether or not it is the longest. If the capsule is equivariant, the decoded digit follows the move."
    )
    sweep_download(transform, name, along, iters)


def _default_digit(loaded: LoadedModel, source: ModelInput, iters: int) -> None:
    """A new input sweeps its label, else CapsNet's reading of it (a link's digit wins, for the link's input)."""
    if st.session_state.get(state.LAB_DIGIT_FOR) != source.key:
        st.session_state[state.LAB_DIGIT_FOR] = source.key
        known = source.label if source.label is not None else _unmoved_prediction(loaded, source, iters)
        state.put(state.LAB_DIGIT, known)
        share.apply_pending((state.LAB_DIGIT,))


def _sweep_charts(
    values: np.ndarray, now: lab.Reading, along: lab.Reading, digit: int, *, label: str, current: float
) -> None:
    """The digit's capsule length (and the CNN's score) along the sweep, beside its 16 pose dimensions."""
    left, right = st.columns(2)
    cnn_now = None if now.cnn is None else float(now.cnn[0, digit])
    left.plotly_chart(
        for_screen(
            viz_lab.sweep_figure(
                values,
                along.capsnet[:, digit],
                None if along.cnn is None else along.cnn[:, digit],
                digit=digit,
                label=label,
                current=current,
                current_scores=(float(now.capsnet[0, digit]), cnn_now),
            )
        ),
        config=PLOT_CONFIG,
        key="fig_lab_sweep",
    )
    left.caption(_sweep_summary(along, digit, values))
    poses = along.poses[:, digit]  # (N, D)
    right.plotly_chart(
        for_screen(viz_lab.pose_sweep_figure(values, poses, digit=digit, label=label, current=current)),
        config=PLOT_CONFIG,
        key="fig_lab_poses",
    )
    right.caption(_pose_summary(poses, values))


def _unmoved_prediction(loaded: LoadedModel, source: ModelInput, iters: int) -> int:
    reading = lab.read(loaded.model, None, source.x.unsqueeze(0), routing_iters=iters)
    return int(reading.capsnet[0].argmax())


def _readings(
    loaded: LoadedModel,
    baseline: LoadedModel | None,
    source: ModelInput,
    transform: lab.Transform,
    iters: int,
    name: str,
) -> tuple[lab.Reading, lab.Reading]:
    """(the current setting's reading, the sweep's). The sweep is kept per setting: moving the swept slider
    itself reads one image; any other change reads the current setting and the sweep in one batched pass."""
    cnn = baseline.model if baseline is not None else None
    fixed = replace(transform, **{name: getattr(DEFAULT, name)})
    wanted = (source.key, loaded.key, baseline.key if baseline else None, iters, name, fixed)
    cached = st.session_state.get(state.LAB_SWEEP)
    if cached is not None and cached[0] == wanted:
        moved = lab.transformed(source.x, [transform])  # (1, 1, 28, 28)
        return lab.read(loaded.model, cnn, moved, routing_iters=iters), cached[1]
    moved = lab.transformed(source.x, [transform, *lab.sweep(transform, name)])  # (1 + N, 1, 28, 28)
    both = lab.read(loaded.model, cnn, moved, routing_iters=iters)
    now, along = both.part(slice(0, 1)), both.part(slice(1, None))
    st.session_state[state.LAB_SWEEP] = (wanted, along)
    return now, along


def _sweep_summary(along: lab.Reading, digit: int, values: np.ndarray) -> str:
    """The measured size of what the sweep chart shows: each model's score range, and where it stays above 0.5."""
    parts = []
    for name, scores in (("CapsNet", along.capsnet), ("CNN", along.cnn)):
        if scores is None:
            continue
        s = scores[:, digit]
        above = s > 0.5
        held = values[above]
        if not held.size:
            span = "never above 0.5"
        elif held.size == 1:
            span = f"above 0.5 only at {held[0]:g}"
        elif np.ptp(np.flatnonzero(above)) + 1 == held.size:  # one unbroken stretch
            span = f"above 0.5 from {held.min():g} to {held.max():g}"
        else:
            span = f"above 0.5 at {held.size} of {len(values)} points, not in one stretch"
        parts.append(f"{name} {s.min():.2f} to {s.max():.2f} ({span})")
    return f"Score for {digit} over the sweep: " + "; ".join(parts) + ". ◆ marks the current setting."


def _pose_summary(poses: np.ndarray, values: np.ndarray) -> str:
    """How smoothly the pose moves: the largest change between neighbouring points against each dimension's range."""
    steps = np.abs(np.diff(poses, axis=0))  # (N-1, D)
    ranges = poses.max(0) - poses.min(0)  # (D,)
    widest = viz_lab.widest_dimension(poses)  # the line the chart draws in colour
    reach = float(np.abs(poses).max())
    return (
        f"Raw pose components, here within ±{reach:.2f} (a capsule's length is at most 1, so each lies in -1..1). "
        f"Dimension {widest} (the blue line) moves the most ({ranges[widest]:.2f} over the sweep); the largest jump "
        f"between neighbouring points is {steps.max():.2f}."
    )


def robustness_table(loaded: LoadedModel, baseline: LoadedModel | None) -> None:
    st.subheader("Robustness on the test set")
    result, problem = lab.load_robustness(lab.robustness_path())
    if problem == lab.NOT_MEASURED:
        st.info(f"Not measured yet: run {lab.MEASURE}.", icon=":material/pending:")
    elif result is None:
        st.warning(f"{plain(problem, MAX_MESSAGE_CHARS)}: rerun {lab.MEASURE}.", icon=":material/warning:")
    else:
        in_use = [m.path for m in (loaded, baseline) if m is not None and m.path is not None]
        entries, missing = lab.rows_in_use(result, in_use)
        st.container(key="narrow_hint").caption(
            "The table is wider than this screen: swipe it sideways for every column."
        )
        st.table([row for entry in entries for row in _rows(entry)])
        against_cnn, routing = lab.affine_gaps(entries, result.get("test_images"))
        if against_cnn is not None:
            st.markdown(_gap_line(against_cnn))
        if routing:
            st.markdown(_routing_line(routing))
        st.caption(
            f"Measured {plain(result.get('date', '?'))} on {plain(result.get('hardware', '?'))} with "
            f"{plain(result.get('command', '?'), MAX_MESSAGE_CHARS)}, {result.get('test_images', '?')} MNIST test "
            f"images (affine seed {result.get('seed', '?')})."
        )
        for path in missing:
            st.caption(f"{plain(path.name)} (these weights) was not measured in that run.")
        if len(missing) == len(in_use):
            st.caption("None of the models in use was: the table shows the models that run measured.")
    st.markdown(PAPER_NOTE)
    st.caption(OURS_NOTE)


def _gap_line(gap: dict) -> str:
    """The measured size of the paper's claim on the affNIST-like set, with its noise: the effect next to the table."""
    paper = 100 * (PAPER_AFFNIST["capsnet"] - PAPER_AFFNIST["cnn"])
    return (
        f"**Measured gap on the affNIST-like set:** {plain(gap['a'])} {gap['accuracy_a']:.2%} − {plain(gap['b'])} "
        f"{gap['accuracy_b']:.2%} = {_difference(gap)}. Paired: {_images(gap['only_a'])} right only by CapsNet, "
        f"{_images(gap['only_b'])} only by the CNN. The standard error covers which test images were drawn, not "
        f"retraining: each model is one training run. The paper: {paper:+.0f} points on affNIST."
    )


def _routing_line(rows: list[dict]) -> str:
    """The CapsNet read with other routing counts than it was trained with, against its trained count."""
    parts = [f"{plain(row['a'])} − {plain(row['b'])}: {_difference(row)}" for row in rows]
    return (
        "**Routing iterations at reading, on the affNIST-like set** (one model trained with one count and read "
        "with others; not a model trained without routing): " + "; ".join(parts) + "."
    )


def _images(count: int) -> str:
    return f"{count:,} image{'' if count == 1 else 's'}"


def _difference(row: dict) -> str:
    """'**+0.34 points** (standard error 0.20): within two standard errors of zero, ...', or how far from zero."""
    sizes = row["standard_errors"]
    if abs(sizes) < 2:
        verdict = "within two standard errors of zero: not distinguishable from no difference"
    elif math.isinf(sizes):
        verdict = "every image favours one side, no spread to measure"
    else:
        verdict = f"{abs(sizes):.1f} standard errors from zero"
    return f"**{row['points']:+.2f} points** (standard error {row['standard_error']:.2f}): {verdict}"


def _rows(entry: dict) -> list[dict]:
    """One row per readout: a CapsNet's at each measured routing count (what routing adds), a CNN's one."""

    def percent(value) -> str:
        return f"{value:.2%}" if isinstance(value, (int, float)) else "?"

    trained = entry.get("routing_iters")
    readouts = entry.get("by_routing")
    if not isinstance(readouts, dict) or not readouts:
        readouts = {"no routing" if trained is None else str(trained): entry}  # (a bare "-" reads as a list)
    return [
        {
            "model": plain(entry.get("name", "?")),
            "kind": plain(entry.get("kind", "?")),
            "parameters": f"{entry['params']:,}" if isinstance(entry.get("params"), int) else "?",
            "routing iterations": f"{plain(routing)} (trained with)" if routing == str(trained) else plain(routing),
            "MNIST test": percent(values.get("mnist") if isinstance(values, dict) else None),
            "affNIST-like": percent(values.get("affine") if isinstance(values, dict) else None),
        }
        for routing, values in readouts.items()
    ]
