"""The Two digits tab: two overlapping digits (MultiMNIST) through the shipped two-digit CapsNet, the same CapsNet
trained without routing, and a CNN; each digit reconstructed from its own capsule, where routing sends the
votes, and the measured size of each effect on the 10,000 test pairs beside it."""

from __future__ import annotations

import numpy as np
import streamlit as st

from capsviz.analysis import multimnist_claims, routing_accuracy
from capsviz.analysis.two_digits import Separation, inks_swapped, owned_share, owners, raised, read, separate
from capsviz.checkpoint import PRETRAINED_DIR, CheckpointError
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.figures.viz_two import (
    coupling_figure,
    coupling_span,
    grey,
    pair_figure,
    reconstruction_colours,
    scores_figure,
)
from capsviz.files import sha256_cached
from capsviz.ui import state
from capsviz.ui.card import plain
from capsviz.ui.resources import LoadedModel, model_from_file
from capsviz.ui.two_digit_input import pair_input
from capsviz.ui.widgets import PLOT_CONFIG

NO_EXTRA = -1  # "Also reconstruct from capsule": none
ROUTED, PLAIN, CNN = "capsnet_multimnist", "capsnet_r1_multimnist", "cnn_multimnist"
NAMES = {ROUTED: "CapsNet", PLAIN: "CapsNet trained without routing (1 iteration)", CNN: "CNN"}
INTRO = (
    "The paper's case for routing by agreement is crowded scenes (section 6): two overlapping digits, where each "
    "primary capsule's vote should go to the digit it belongs to. Three models trained on the same pairs read the "
    "same picture: a CapsNet, the same CapsNet trained without routing, and a CNN. Each digit is reconstructed from "
    "its own capsule, as in the paper's Figure 5."
)


def shipped(name: str, device: str) -> LoadedModel | None:
    try:
        return model_from_file(PRETRAINED_DIR / f"{name}.safetensors", device, NAMES[name])
    except (CheckpointError, OSError):
        return None


def two_digits_tab(device: str) -> None:
    st.caption(INTRO)
    models = {name: shipped(name, device) for name in NAMES}
    if models[ROUTED] is None:
        st.error(f"The two-digit CapsNet ({PRETRAINED_DIR / ROUTED}.safetensors) is missing or unreadable: restore "
                 "`pretrained/` from the repository (git checkout pretrained/).")  # fmt: skip
        return
    left, right = st.columns([1, 2])
    with left:
        picture = pair_input()
        iters = state.widget(
            st.slider, "CapsNet routing iterations", 1, MAX_ROUTING_ITERS, key=state.TWO_ITERS, default=3,
            help="The two-digit CapsNet's routing iterations for this tab (trained with 3). The CapsNet trained "
            "without routing always reads with 1.",
        )  # fmt: skip
    if picture is None:
        return
    x, labels, singles = picture.x, picture.labels, picture.singles
    capsnet = models[ROUTED].model
    readings = {name: read(m.model, x, iters if name == ROUTED else None) for name, m in models.items() if m}
    reading = readings[ROUTED]
    with right:
        extra = state.widget(
            st.selectbox, "Also reconstruct from capsule", [NO_EXTRA, *range(10)], key=state.TWO_EXTRA,
            default=NO_EXTRA, format_func=lambda d: "none" if d == NO_EXTRA else str(d),
            help="Any digit capsule's pose through the decoder, the others masked: the paper's 'digit that is not "
            "there' decodes to what that capsule holds.",
        )  # fmt: skip
        seen = separate(capsnet, x, reading.named + ((extra,) if extra != NO_EXTRA else ()), iters)
        named, seen = in_picture_order(reading.named, picture, seen)  # red: the picture's first digit
        st.plotly_chart(pair_figure(_panels(picture, reading, named, seen, models[PLAIN], readings, extra)),
                        config=PLOT_CONFIG, key="two_pair_figure")  # fmt: skip
    readings_table(models, readings, labels)
    st.plotly_chart(
        scores_figure(reading.scores, named, f"CapsNet capsule lengths ({iters} iterations)", "capsule length"),
        config=PLOT_CONFIG,
        key="two_scores_figure",
    )
    report = shipped_report(models)
    st.divider()
    couplings(seen, named, singles, labels, capsnet.config)
    measured_coupling(report)
    st.divider()
    measured(models, report)


def in_picture_order(named: tuple[int, int], picture, seen: Separation) -> tuple[tuple[int, int], Separation]:
    """The two named digits, and what `separate` saw for them, in the order of the picture's own digits (its
    labels, or its red then blue ink), so that red is the first digit in every figure; as named (longest first)
    when the picture has no digits of its own."""
    if picture.labels is not None:
        first = sorted(named, key=lambda d: picture.labels.index(d) if d in picture.labels else 2)[0]
        swap = first != named[0]
    else:
        swap = picture.singles is not None and inks_swapped(seen.reconstructions[:2], picture.singles.numpy())
    return (named[::-1], seen.swapped()) if swap else (named, seen)


def _panels(picture, reading, named, seen, plain: LoadedModel | None, readings: dict, extra: int) -> list:
    """The input, each CapsNet's two reconstructions in red and blue, and the extra capsule's, if one was asked."""
    x = picture.x
    panels = [("Input", grey(x[0].numpy())), (f"CapsNet: {named[0]} red, {named[1]} blue",
                                             reconstruction_colours(seen.reconstructions))]  # fmt: skip
    if plain is not None:
        other = readings[PLAIN].named
        other, alone = in_picture_order(other, picture, separate(plain.model, x, other, 1))
        panels.append(
            (f"Without routing: {other[0]} red, {other[1]} blue", reconstruction_colours(alone.reconstructions))
        )
    if extra != NO_EXTRA:
        panels.append((f"CapsNet, capsule {extra} ({reading.scores[extra]:.2f})", grey(seen.reconstructions[2])))
    return panels


def readings_table(models: dict, readings: dict, labels) -> None:
    rows = []
    for name in models:
        if name not in readings:
            rows.append({"model": NAMES[name], "names": "not shipped here", "their scores": "", "right": ""})
            continue
        reading = readings[name]
        first, second = reading.named
        right = "" if labels is None else ("both" if set(labels) == {first, second} else "no")
        scores = f"{reading.scores[first]:.3f}, {reading.scores[second]:.3f}"
        rows.append({"model": NAMES[name], "names": f"{first} and {second}", "their scores": scores, "right": right})
    st.table(rows, hide_index=True)
    st.caption("Scores: a CapsNet's capsule lengths, the CNN's sigmoid probabilities. Each model names the two "
               "digits it scores highest; a pair is right when both are its digits.")  # fmt: skip


def couplings(seen, named: tuple[int, int], singles, labels, config) -> None:
    st.subheader("Where routing sends the votes")
    st.plotly_chart(coupling_figure(seen.share, named), config=PLOT_CONFIG, key="two_couplings")
    last = len(seen.share)
    st.caption(
        f"Each map: the 10x10 primary-capsule positions; colour: how much more of its coupling a position sends to "
        f"{named[0]} (red) than to {named[1]} (blue), averaged over the 32 capsule types, in percentage points. "
        f"Iteration 1 is uniform (10% to each of the 10 digits). The scale spans ±{coupling_span(seen.share):.2f} "
        "points, the largest difference shown."
    )
    if singles is None or (labels is not None and set(labels) != set(named)) or last == 1:
        return  # no ink to tell the digits apart by, a reading that names another digit, or no routing yet
    owner = owners(singles, config)  # (G, G): 0, 1 or -1; `named` is in the picture's order (in_picture_order)
    said = [_ink_summary(seen.share, owner, named, k) for k in (0, 1)]
    if any(said):
        account = (
            "In the paper's account, routing by agreement raises the first figure above 10% and lowers the second."
        )
        st.markdown(f"This picture, after iteration {last}: " + "; ".join(filter(None, said)) + ". " + account)


def _ink_summary(share: np.ndarray, owner: np.ndarray, named: tuple[int, int], k: int) -> str | None:
    """One sentence on the positions digit k's ink dominates, or None when there are none."""
    owned, rose = owned_share(share, owner) * 100, raised(share, owner, k)  # (R, 2, 2) percent
    if rose is None:
        return None
    digit, other = named[k], named[1 - k]
    return (f"positions on the {digit}'s ink ({int((owner == k).sum())} of 100) send {owned[-1, k, k]:.2f}% of "
            f"their coupling to {digit} and {owned[-1, k, 1 - k]:.2f}% to {other}; since iteration 1, {rose[0]:.0%} "
            f"of them raised their coupling to {digit}, which changed by {rose[1] * 100:+.2f} points on "
            "average")  # fmt: skip


def measured_coupling(report: dict | None) -> None:
    coupling = report and report.get("coupling")
    if not coupling:
        return
    own = " → ".join(f"{v:.2%}" for v in coupling["own"])
    other = " → ".join(f"{v:.2%}" for v in coupling["other"])
    st.markdown(f"Over the {report['test_pairs']:,} test pairs, iteration by iteration, positions on one digit's ink "
                f"send {own} of their coupling to that digit, and {other} to the other digit.")  # fmt: skip


def shipped_report(models: dict) -> dict | None:
    """The comparison report with only the models whose exact weights it measured and this page shows."""
    report = multimnist_claims.load()
    if report is None:
        return None
    here = {n: sha256_cached(m.path) for n, m in models.items() if m is not None and m.path is not None}
    kept = {name: m for name, m in report["models"].items() if here.get(name) == m["sha256"]}
    if ROUTED not in kept:
        report["coupling"] = None  # measured on other weights than the CapsNet shown
    report["models"] = kept
    report["comparisons"] = [c for c in report["comparisons"] if {c["a"], c["b"]} <= set(kept)]
    return report


def measured(models: dict, report: dict | None) -> None:
    st.subheader(f"Measured on the {report['test_pairs']:,} test pairs" if report else "Measured on the test pairs")
    if report is None:
        st.info("No comparison report here: `python -m capsviz multimnist-claims` measures one.")
    else:
        rows = [{"model": NAMES.get(n, n), "pairs right": f"{m['accuracy']:.2%}"} for n, m in report["models"].items()]
        st.table(rows, hide_index=True)
        for c in report["comparisons"]:
            st.markdown(f"{NAMES[c['a']]} against {NAMES[c['b']]}: {c['lead'] * 100:+.2f} points "
                        f"(paired standard error {c['se'] * 100:.2f}).")  # fmt: skip
    routed = models[ROUTED]
    try:
        path = routed.path
        by_iters = routing_accuracy.load_for(path, sha256_cached(path)) if path is not None else None
    except ValueError as exc:
        st.warning(f"The CapsNet's routing report cannot be used: {plain(exc, 300)}")
        return
    if by_iters is not None:
        counts = list(by_iters["accuracy"])
        steps = ", ".join(f"{r}: {a:.2%}" for r, a in by_iters["accuracy"].items())
        st.markdown(f"The CapsNet read with {counts[0]} to {counts[-1]} routing iterations, pairs right: {steps}.")
