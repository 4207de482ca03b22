"""The routing X-ray: couplings, votes and agreement, one capsule inspected, what routing adds.

The trace of every iteration (up to 5) is computed once per (model, input) and kept in the
session (`state.ROUTING_XRAY`); the page's routing-iterations slider only slices it, so moving a
slider or clicking a capsule reruns figures, never the model. Only the chosen view is drawn.
All numbers come from `capsviz.analysis.xray`; all figures from `capsviz.figures.viz` and `capsviz.figures.viz_routing`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import streamlit as st

from capsviz.analysis import routing_accuracy, trace_export, xray
from capsviz.analysis.inference import Inference
from capsviz.figures import viz, viz_routing
from capsviz.ui import routing_play, state, tiles
from capsviz.ui.inputs import ModelInput
from capsviz.ui.resources import LoadedModel
from capsviz.ui.text import MAX_MESSAGE_CHARS, plain
from capsviz.ui.widgets import PLOT_CONFIG, for_screen, kept_expander

COUPLINGS, VOTES, ADDS, COMPARE = "Couplings", "Votes and agreement", "What routing adds", "Uniform vs routed"
VIEWS = (COUPLINGS, VOTES, ADDS, COMPARE)
MAX_CUSTOMDATA = 8  # a chart point's customdata is a few numbers; a longer one is not the chart's
PROCEDURE_1 = (
    r"\hat u_{j|i} = W_{ij}\,u_i \qquad c_{ij} = \frac{e^{b_{ij}}}{\sum_k e^{b_{ik}}} \qquad "
    r"s_j = \sum_i c_{ij}\,\hat u_{j|i} \qquad v_j = \frac{|s_j|^2}{1+|s_j|^2}\frac{s_j}{|s_j|} \qquad "
    r"b_{ij} \leftarrow b_{ij} + \hat u_{j|i}\cdot v_j"
)


def full_xray(loaded: LoadedModel, source: ModelInput) -> xray.RoutingXray:
    """Every iteration's routing for this input, computed once per (model, input)."""
    key = f"{loaded.key}:{source.key}"
    cached = st.session_state.get(state.ROUTING_XRAY)
    if cached is None or cached[0] != key:
        st.session_state[state.ROUTING_XRAY] = cached = (key, xray.xray(loaded.model, source.x))
    return cached[1]


@st.cache_data(max_entries=16, show_spinner=False)
def _measured(path: str, checkpoint_stamp: tuple, report_stamp: tuple | None) -> tuple[dict | None, str | None]:
    """The routing-accuracy JSON next to a checkpoint file, if it measured these exact bytes, or (None, why it
    could not be read). Keyed on both files (mtime, size, inode), so a report written since shows at once."""
    try:
        return routing_accuracy.load_for(path), None
    except ValueError as exc:
        return None, str(exc)


def _stamp(path: Path) -> tuple | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino  # a report is replaced by a rename: a new inode


def measured_for(path: Path | None) -> tuple[dict | None, str | None]:
    """`_measured` for a checkpoint in use, or (None, None) for a model that is not a file."""
    stamp = _stamp(path) if path is not None and path.is_file() else None
    if stamp is None:
        return None, None
    return _measured(str(path), stamp, _stamp(routing_accuracy.results_path(path)))


def routing(loaded: LoadedModel, full: xray.RoutingXray, result: Inference, routing_iters: int) -> None:
    """full: this input's X-ray with every iteration (`full_xray`); the views show its first `routing_iters`."""
    ray = full.upto(routing_iters)
    config = loaded.model.config
    st.subheader("Dynamic routing, measured on this input")
    controls = st.columns([1, 1, 2, 1])
    shown = state.value(state.ROUTING_VIEW, COUPLINGS)  # the radio below: its value as this run began
    with controls[0]:
        if shown == COMPARE:  # two fixed counts: no slider to mislead
            iteration = routing_play.fixed_counts(config.routing_iters, full.iterations)
        else:
            iteration = routing_play.iteration_slider(ray.iterations)
    digit = None  # the other views show every digit, or the prediction's: no parent to choose
    if shown in (COUPLINGS, VOTES):
        digit = state.widget(controls[1].selectbox, "Parent capsule (digit)", range(config.num_classes),
                             key=state.ROUTING_DIGIT, default=result.predicted)  # fmt: skip
    view = state.widget(controls[2].radio, "View", VIEWS, horizontal=True, key=state.ROUTING_VIEW, default=COUPLINGS)
    with controls[3]:
        st.download_button(
            "Download the trace",
            functools.partial(
                trace_export.to_bytes,
                ray,
                predicted=result.predicted,
                checkpoint=str(loaded.path) if loaded.path is not None else loaded.label,
            ),
            file_name=f"capsviz-trace-{result.predicted}-r{ray.iterations}.safetensors",
            mime="application/octet-stream",
            key=state.ROUTING_EXPORT,
            help="Input, primary capsules, votes, couplings, logits, poses, lengths and agreements of every "
            "iteration (safetensors; keys and shapes in docs/cli.md). `python -m capsviz trace IMAGE` writes the same.",
        )
    if view == COUPLINGS:
        couplings_view(ray, config, digit, iteration)
    elif view == VOTES:
        votes_view(ray, digit, iteration)
    elif view == ADDS:
        adds_view(full, loaded, routing_iters, result.predicted)
    else:
        routing_play.compare_view(full, config.routing_iters, xray.field_centres(config))


# --- couplings ---------------------------------------------------------------------------------


def _picked(key: str) -> list[list]:
    """The customdata of each point selected in the chart under `key`, as lists; anything else the page sends
    (other shapes, a dict of other keys) is skipped."""
    chart = st.session_state.get(key)
    selection = chart.get("selection") if isinstance(chart, dict) else None
    points = selection.get("points") if isinstance(selection, dict) else None
    picked = []
    for point in points if isinstance(points, list) else []:
        custom = _as_list(point.get("customdata") if isinstance(point, dict) else None)
        if custom is not None:
            picked.append(custom)
    return picked


def _as_list(custom) -> list | None:
    """A point's customdata as a list: a list, or the {"0": .., "1": ..} the browser makes of an array; else None."""
    if isinstance(custom, dict) and len(custom) <= MAX_CUSTOMDATA:
        keys = [str(i) for i in range(len(custom))]
        custom = [custom[k] for k in keys] if all(k in custom for k in keys) else None
    return custom if isinstance(custom, list) and len(custom) <= MAX_CUSTOMDATA else None


def _whole(value, high: int) -> bool:
    """A JSON number that is a whole number in 0..high (compared before converting: 10^400 is no error)."""
    return type(value) in (int, float) and 0 <= value <= high and float(value).is_integer()


def _on_pick(count: int) -> None:
    """A click on the tiles: the clicked cell's capsule becomes the inspected one."""
    n = tiles.picked(st.session_state.get(state.ROUTING_TILES))
    if n is not None and 0 <= n < count:
        state.put(state.INSPECT_CAPSULE, n)


def _on_pick_position(grid: int) -> None:
    """A click on the overlay: the capsule at that position, of the inspected type (type 0 at first)."""
    for custom in _picked(state.ROUTING_OVERLAY):
        if len(custom) == 3 and _whole(custom[0], grid - 1) and _whole(custom[1], grid - 1):  # [row, col, coupling]
            current = state.value(state.INSPECT_CAPSULE)
            capsule_type = xray.capsule_position(current, grid)[0] if current is not None else 0
            state.put(state.INSPECT_CAPSULE, xray.capsule_index(capsule_type, int(custom[0]), int(custom[1]), grid))
            return


def couplings_view(ray: xray.RoutingXray, config, digit: int, iteration: int) -> None:
    st.markdown(f"**Measured:** {xray.summary_text(ray, digit)}")
    n_max = ray.primary.shape[0] - 1
    selected = state.widget(
        st.number_input,
        f"Inspect primary capsule (click a tile cell, or type 0–{n_max})",
        min_value=0,
        max_value=n_max,
        value=None,
        step=1,
        key=state.INSPECT_CAPSULE,
        fits=lambda n: n is None or 0 <= n <= n_max,
    )
    couplings = ray.couplings[iteration - 1]  # (N, J)
    low, high = xray.coupling_range(config.num_classes)
    left, right = st.columns([3, 2])
    with left:
        spec = viz.coupling_tiles_spec(
            couplings[:, digit], digit, iteration, num_classes=config.num_classes, selected=selected
        )
        tiles.coupling_tiles(
            spec,
            key=state.ROUTING_TILES,
            on_pick=functools.partial(_on_pick, couplings.shape[0]),
        )
        st.caption(
            f"Colour is relative to uniform: white = 1/{config.num_classes} (every parent equal), red above, "
            f"blue below, on one fixed range {low:g}–{high:g} for every digit and iteration (anything above "
            f'{high:g} shows as {high:g}). Iteration 1 is uniform by definition. "Moved" above is the mean, over '
            "the primary capsules, of the total-variation distance between their couplings at iteration 1 and at "
            "the last iteration."
        )
    with right:
        _overlay(ray, config, couplings, iteration)
    if selected is not None:
        inspector(ray, config, int(selected), digit)
    matrix = kept_expander(
        f"The full {ray.primary.shape[0]} x {config.num_classes} coupling matrix", key=state.ROUTING_MATRIX_OPEN
    )
    if matrix.open:  # built only when shown; stays open across a Clear
        with matrix:
            st.plotly_chart(
                for_screen(viz.coupling_matrix_figure(couplings, iteration)), config=PLOT_CONFIG, key="fig_matrix"
            )


def _overlay(ray: xray.RoutingXray, config, couplings, iteration: int) -> None:
    """Each position's split of its votes over the input, as departure from uniform; a click inspects it."""
    st.plotly_chart(
        for_screen(
            viz_routing.split_overlay_figure(
                ray.image, xray.position_split(couplings, ray.grid), xray.field_centres(config), iteration=iteration
            )
        ),
        config=PLOT_CONFIG,
        key=state.ROUTING_OVERLAY,
        on_select=functools.partial(_on_pick_position, ray.grid),
        selection_mode="points",
    )
    st.caption(
        f"Each dot sits at the centre of a 6×6 position's receptive field. Its size: how much of that position's "
        f"coupling (the mean over its {ray.num_types} capsule types) has moved off uniform, 1/{config.num_classes} "
        "to each digit, scaled from none to the most on this input (the title gives both); its colour: the digit "
        "the position favours (the legend names each), an open ring where two tie. Click a dot to inspect the "
        "capsule of the same type there."
    )


def _per_digit_table(values: np.ndarray, decimals: int) -> dict:
    """(R, J) -> a table: one row per digit, one column per iteration."""
    table = {"digit": list(range(values.shape[1]))}
    for r, row in enumerate(values, start=1):
        table[f"iteration {r}"] = [round(float(v), decimals) for v in row]
    return table


def _strongest(values: np.ndarray) -> str:
    """(R, J) -> "iteration 1: no winner (tie); iteration 2: 4; ..." """
    named = [str(w) if (w := xray.winner(row)) is not None else "no winner (tie)" for row in values]
    return "; ".join(f"iteration {r}: {w}" for r, w in enumerate(named, start=1))


def inspector(ray: xray.RoutingXray, config, n: int, digit: int) -> None:
    report = xray.capsule_report(ray, n)
    field = xray.receptive_field(config, report.row, report.col)
    with st.container(key="inspector"):
        st.markdown(
            f"#### Primary capsule {n}: type {report.capsule_type}, row {report.row}, col {report.col}, "
            f"length {report.length:.3f}"
        )
        left, right = st.columns([1, 2])
        left.plotly_chart(
            for_screen(
                viz_routing.field_figure(
                    ray.image,
                    field,
                    f"its receptive field: rows {field.top}–{field.top + field.size - 1}, "
                    f"cols {field.left}–{field.left + field.size - 1}",
                )
            ),
            config=PLOT_CONFIG,
            key="fig_field",
        )
        right.plotly_chart(
            for_screen(viz_routing.capsule_figure(report.pose, report.vote_lengths)),
            config=PLOT_CONFIG,
            key="fig_capsule",
        )
        left, right = st.columns(2)
        left.markdown("Its couplings c_ij")
        left.dataframe(_per_digit_table(report.couplings, 4), hide_index=True, key="table_couplings")
        left.caption(f"Largest coupling: {_strongest(report.couplings)}.")
        right.markdown("Its agreements û_j|i · v_j")
        right.dataframe(_per_digit_table(report.agreements, 4), hide_index=True, key="table_agreements")
        procedure(ray, n, digit)


def procedure(ray: xray.RoutingXray, n: int, digit: int) -> None:
    """The paper's Procedure 1 for child i = n and parent j = digit, with this input's numbers."""
    st.markdown(f"**Procedure 1** (Sabour et al. 2017) for capsule i = {n} and digit j = {digit}:")
    st.latex(PROCEDURE_1)
    rows = xray.procedure_rows(ray, n, digit)
    st.caption(
        f"|u_i| = {np.linalg.norm(ray.primary[n]):.4f}, |û_j|i| = {ray.vote_lengths[n, digit]:.4f}; "
        f"b starts at 0, so iteration 1's couplings are all 1/{ray.couplings.shape[-1]}. "
        "The last iteration's agreement is computed here but not used by the model."
    )
    table = {
        "iteration": list(range(1, ray.iterations + 1)),
        "b_ij": [round(float(v), 5) for v in rows["b"]],
        "c_ij": [round(float(v), 5) for v in rows["c"]],
        "|s_j|": [round(float(v), 4) for v in rows["s"]],
        "|v_j|": [round(float(v), 4) for v in rows["v"]],
        "û·v (added to b_ij)": [round(float(v), 5) for v in rows["a"]],
    }
    st.dataframe(table, hide_index=True, key="table_procedure")


# --- votes and agreement -----------------------------------------------------------------------


def votes_view(ray: xray.RoutingXray, digit: int, iteration: int) -> None:
    st.markdown(f"**Measured:** {xray.votes_text(ray, digit, iteration)}")
    votes = ray.votes[:, digit]  # (N, D)
    basis = xray.vote_plane(votes, ray.poses[-1, digit])
    figure = viz_routing.votes_figure(
        xray.project(votes, basis),
        ray.vote_lengths[:, digit],
        ray.couplings[iteration - 1, :, digit],
        xray.project(ray.poses[:, digit], basis),
        digit=digit,
        iteration=iteration,
        num_classes=ray.couplings.shape[-1],
    )
    st.plotly_chart(for_screen(figure), config=PLOT_CONFIG, key="fig_votes")
    st.caption(
        f"Each dot is one primary capsule's 16-D vote û for digit {digit}, sized by its length and coloured by "
        f"its coupling on the fixed scale. Projection: x is the component along v_{digit} after the last "
        "iteration (so x·|v| is the vote's agreement), y the direction across it in which the votes spread "
        f"most; the same axes at every iteration. This plane shows {xray.captured_fraction(votes, basis):.0%} "
        "of the votes' summed squared length. Routing raises the couplings of votes far to the right."
    )
    edges, counts = xray.histograms(ray.agreements[:, :, digit])
    st.plotly_chart(
        for_screen(
            viz_routing.distributions_figure(
                edges, counts, iteration=iteration, digit=digit, primary_lengths=ray.primary_lengths
            )
        ),
        config=PLOT_CONFIG,
        key="fig_agreement",
    )


# --- what routing adds -------------------------------------------------------------------------


def adds_view(full: xray.RoutingXray, loaded: LoadedModel, routing_iters: int, predicted: int) -> None:
    st.markdown(f"**Measured on this input:** {xray.iterations_text(full.lengths)}")
    st.plotly_chart(
        for_screen(viz_routing.lengths_by_iteration_figure(full.lengths, chosen=routing_iters, predicted=predicted)),
        config=PLOT_CONFIG,
        key="fig_iterations",
    )
    st.markdown("**On the MNIST test set, for this model:**")
    path = loaded.path
    measured, problem = measured_for(path)
    if measured is None:
        target = f" --checkpoint {plain(routing_accuracy.display_path(path), MAX_MESSAGE_CHARS)}" if path else ""
        command = f"python -m capsviz routing-accuracy{target}"
        if problem:
            st.warning(f"The routing report could not be read ({plain(problem, MAX_MESSAGE_CHARS)}). {command} "
                       "measures it again.")  # fmt: skip
            return
        st.info(
            f"Not measured for this checkpoint. {command} measures test accuracy after 1 to 5 iterations (one pass "
            "over the 10,000 images) and writes it next to the checkpoint; it shows here only while the checkpoint's "
            "bytes match."
        )
        return
    table = {
        "routing iterations": list(measured["accuracy"]),
        "test accuracy": [f"{v:.2%}" for v in measured["accuracy"].values()],
        "errors": [measured["errors"][r] for r in measured["accuracy"]],
    }
    st.dataframe(table, hide_index=True, key="table_routing_accuracy")
    st.caption(
        f"{measured['test_images']:,} MNIST test images, measured {plain(measured['date'])} by "
        f"{plain(measured['command'], MAX_MESSAGE_CHARS)} (checkpoint sha256 {measured['sha256'][:12]}…). The model "
        f"was trained with {measured['trained_routing_iters']} iterations."
    )
