"""The Two digits tab: two overlapping digits (MultiMNIST) through the shipped two-digit CapsNet, the same CapsNet
trained without routing, and a CNN; each digit reconstructed from its own capsule, where routing sends the
votes, and the measured size of each effect on the 10,000 test pairs beside it."""

from __future__ import annotations

import os

import numpy as np
import streamlit as st

from capsviz import multimnist
from capsviz.analysis import multimnist_claims, routing_accuracy
from capsviz.analysis.routing_accuracy import sha256_of
from capsviz.analysis.two_digits import centred, owned_share, owners, read, separate
from capsviz.checkpoint import PRETRAINED_DIR, CheckpointError
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import DataUnavailableError, load_mnist
from capsviz.figures.viz_two import coupling_figure, pair_figure, scores_figure
from capsviz.ui import state
from capsviz.ui.card import plain
from capsviz.ui.resources import LoadedModel, model_from_file

ROUTED, PLAIN, CNN = "capsnet_multimnist", "capsnet_r1_multimnist", "cnn_multimnist"
NAMES = {ROUTED: "CapsNet", PLAIN: "CapsNet trained without routing (1 iteration)", CNN: "CNN"}
PAIR, EXPLORED = "A MultiMNIST test pair", "The Explore tab's input"
INTRO = (
    "The paper's case for routing by agreement is crowded scenes (section 6): two overlapping digits, where each "
    "primary capsule's vote should go to the digit it belongs to. Three models trained on the same pairs read the "
    "same picture: a CapsNet, the same CapsNet trained without routing, and a CNN. Each digit is reconstructed from "
    "its own capsule, as in the paper's Figure 5."
)


@st.cache_resource(show_spinner="Composing the 10,000 MultiMNIST test pairs...")
def _test_pairs(root: str | None) -> multimnist.Pairs:
    return multimnist.fixed_test_pairs(load_mnist(root, train=False))


def test_pairs() -> tuple[multimnist.Pairs | None, str | None]:
    try:
        return _test_pairs(os.environ.get("CAPSVIZ_DATA")), None
    except DataUnavailableError as exc:
        return None, str(exc)


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
        x, labels, singles = pair_input()
        iters = state.widget(
            st.slider, "CapsNet routing iterations", 1, MAX_ROUTING_ITERS, key=state.TWO_ITERS, default=3,
            help="The two-digit CapsNet's routing iterations for this tab (trained with 3). The CapsNet trained "
            "without routing always reads with 1.",
        )  # fmt: skip
    if x is None:
        return
    capsnet = models[ROUTED].model
    reading = read(capsnet, x, iters)
    seen = separate(capsnet, x, reading.named, iters)
    with right:
        st.plotly_chart(pair_figure(x[0].numpy(), seen.reconstructions, reading.named), key="two_pair_figure")
    readings_table(models, x, iters, labels)
    st.plotly_chart(
        scores_figure(reading.scores, reading.named, f"CapsNet capsule lengths ({iters} iterations)", "capsule length"),
        key="two_scores_figure",
    )
    report = shipped_report(models)
    st.divider()
    couplings(seen, reading.named, singles, labels, capsnet.config)
    measured_coupling(report)
    st.divider()
    measured(models, report)


def pair_input():
    """(x (1, 36, 36) in [0, 1] or None, the pair's labels or None, its single-digit images (2, 36, 36) or None)."""
    source = state.widget(st.radio, "Two digits from", (PAIR, EXPLORED), key=state.TWO_SOURCE, default=PAIR)
    if source == EXPLORED:
        explored = st.session_state.get(state.LAB_INPUT)
        if explored is None or explored.x is None:
            st.info("Draw, upload or pick a digit in the Explore tab first: it is read here on the 36x36 canvas.")
            return None, None, None
        st.caption("The Explore tab's 28x28 input, at the centre of the 36x36 two-digit canvas.")
        return centred(explored.x), None, None
    pairs, problem = test_pairs()
    if pairs is None:
        st.error(problem)
        return None, None, None
    last = len(pairs.labels) - 1
    index = state.widget(st.number_input, "Test pair", key=state.TWO_PAIR, default=0, min_value=0, max_value=last,
                         step=1, fits=lambda v: isinstance(v, int) and 0 <= v <= last)  # fmt: skip
    st.button("Random pair", key=state.TWO_RANDOM, on_click=_random_pair, args=(last,))
    labels = tuple(pairs.labels[index].tolist())
    st.caption(f"Test pair #{index}: a {labels[0]} and a {labels[1]}, each shifted by up to 4 px, overlaid.")
    singles = pairs.singles[index].float().div(255)  # (2, 36, 36)
    return pairs.images[index].float().div(255)[None], labels, singles


def _random_pair(last: int) -> None:
    state.put(state.TWO_PAIR, int(np.random.default_rng().integers(0, last + 1)))


def readings_table(models: dict, x, iters: int, labels) -> None:
    rows = []
    for name, loaded in models.items():
        if loaded is None:
            rows.append({"model": NAMES[name], "names": "not shipped here", "their scores": "", "right": ""})
            continue
        reading = read(loaded.model, x, iters if name == ROUTED else None)
        first, second = reading.named
        right = "" if labels is None else ("both" if set(labels) == {first, second} else "no")
        scores = f"{reading.scores[first]:.3f}, {reading.scores[second]:.3f}"
        rows.append({"model": NAMES[name], "names": f"{first} and {second}", "their scores": scores, "right": right})
    st.table(rows, hide_index=True)
    st.caption("Scores: a CapsNet's capsule lengths, the CNN's sigmoid probabilities. Each model names the two "
               "digits it scores highest; a pair is right when both are its digits.")  # fmt: skip


def couplings(seen, named: tuple[int, int], singles, labels, config) -> None:
    st.subheader("Where routing sends the votes")
    st.plotly_chart(coupling_figure(seen.share, named), key="two_couplings")
    last = len(seen.share)
    st.caption(
        f"Each map: the 10x10 primary-capsule positions; colour: how much more of its coupling a position sends to "
        f"{named[0]} (red) than to {named[1]} (blue), averaged over the 32 capsule types, in percentage points. "
        f"Iteration 1 is uniform (10% to each of the 10 digits). The scale spans the largest difference shown."
    )
    if singles is None or labels is None or set(labels) != set(named):
        return
    order = [labels.index(d) for d in named]
    owner = owners(singles[order], config)
    share = owned_share(seen.share, owner) * 100  # (R, 2, 2) percent
    said = []
    for k, digit in enumerate(named):
        if not np.isnan(share[-1, k, 0]):
            said.append(f"positions on the {digit}'s ink ({int((owner == k).sum())} of 100) send "
                        f"{share[-1, k, k]:.2f}% of their coupling to {digit} and {share[-1, k, 1 - k]:.2f}% to "
                        f"{named[1 - k]}")  # fmt: skip
    if said:
        account = (
            "In the paper's account, routing by agreement raises the first figure above 10% and lowers the second."
        )
        st.markdown(f"This picture, after iteration {last}: " + "; ".join(said) + ". " + account)


def measured_coupling(report: dict | None) -> None:
    coupling = report and report.get("coupling")
    if not coupling:
        return
    own = " → ".join(f"{v:.2%}" for v in coupling["own"])
    other = " → ".join(f"{v:.2%}" for v in coupling["other"])
    st.markdown(f"Over the {report['test_pairs']:,} test pairs, iteration by iteration, positions on one digit's ink "
                f"send {own} of their coupling to that digit, and {other} to the other digit.")  # fmt: skip


@st.cache_data(max_entries=16, show_spinner=False)
def _sha256_at(path: str, mtime: float) -> str:
    return sha256_of(path)


def _sha256(path) -> str:
    return _sha256_at(str(path), os.stat(path).st_mtime)


def shipped_report(models: dict) -> dict | None:
    """The comparison report with only the models whose exact weights it measured and this page shows."""
    report = multimnist_claims.load()
    if report is None:
        return None
    here = {n: _sha256(m.path) for n, m in models.items() if m is not None and m.path is not None}
    kept = {name: m for name, m in report["models"].items() if here.get(name) == m["sha256"]}
    if ROUTED not in kept:
        report["coupling"] = None  # measured on other weights than the CapsNet shown
    report["models"] = kept
    report["comparisons"] = [c for c in report["comparisons"] if {c["a"], c["b"]} <= set(kept)]
    return report


def measured(models: dict, report: dict | None) -> None:
    st.subheader("Measured on the 10,000 test pairs")
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
        by_iters = routing_accuracy.load_for(routed.path, _sha256(routed.path)) if routed.path is not None else None
    except ValueError as exc:
        st.warning(f"The CapsNet's routing report cannot be used: {plain(exc, 300)}")
        return
    if by_iters is not None:
        steps = ", ".join(f"{r}: {a:.2%}" for r, a in by_iters["accuracy"].items())
        st.markdown(f"The CapsNet read with 1 to 5 routing iterations, pairs right: {steps}.")
