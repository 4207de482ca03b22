"""A link that restores the view: the address bar always holds what the page shows, so a teacher can copy it
(or bookmark it) and open the same view later.

    ?src=mnist&i=1234&model=shipped&iters=3&view=couplings&iteration=3&route=7&capsule=500&stage=conv1&pose=7
    ?tab=lab&src=image&img=<base64url of the 28x28 input>&model=run:20261123-...&iters=2&rotation=20&sweep=shear

    tab        explore (left out), lab or train
    src, i     an MNIST test image by index; src=image and img: the 28x28 input itself (784 bytes)
    model      shipped, or run:NAME (a run in this server's runs folder)
    iters      routing iterations at inference, 1 to 5
    view       the routing view: couplings, votes, adds or compare; iteration: the iteration it shows
    route      the parent capsule (digit) the routing views show; capsule: the inspected primary capsule
    stage      the guided path's stage: input, conv1, primarycaps, digitcaps or decoder
    pose       the digit reconstructed from its pose; offsets: the 16 pose offsets, when any is not 0
    rotation, scale_x, scale_y, shear, shift_x, shift_y, thickness: the Claims lab's transform (when not neutral)
    sweep      the transform the lab sweeps; sweep_digit: the digit whose score it sweeps
    two_src    the Two digits tab's picture: pair (a MultiMNIST test pair), digits (two test digits), draw (the
               two-pen canvas, which a link opens empty) or explore (the Explore tab's input)
    pair       the MultiMNIST test pair's index; two_iters: the two-digit CapsNet's routing iterations
    digits     the two MNIST test digits' indices, "a,b"; shifts: their 4 shifts in px, "across,down,across,down"

Drawn and uploaded inputs travel as the 28x28 image the model saw (1,046 characters), not as strokes or the
original file. An uploaded checkpoint cannot be named in a link. A part that cannot be read is named in a
message above the tabs and left out; the rest of the view loads.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch

from capsviz import multimnist
from capsviz.analysis import lab, perturb, stages
from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.data import to_float
from capsviz.model import PAPER
from capsviz.ui import state
from capsviz.ui.inputs import DRAW, RANDOM, SAMPLE, ModelInput
from capsviz.ui.resources import mnist_test, run_checkpoints
from capsviz.ui.routing import VIEWS
from capsviz.ui.sidebar import RUN_PREFIX, SHIPPED
from capsviz.ui.text import plain
from capsviz.ui.two_digit_input import DIGITS, DRAWN, EXPLORED, PAIR

SIDE = 28
TABS = state.TAB_NAMES
VIEW_NAMES = dict(zip(("couplings", "votes", "adds", "compare"), VIEWS, strict=True))  # every view has a name
STAGE_NAMES = {name.lower(): f"{name} · {holds}" for name, holds, _ in stages.STAGES}  # the guided path's labels
CAPSULES = PAPER.num_primary
TWO_SOURCES = {"pair": PAIR, "digits": DIGITS, "draw": DRAWN, "explore": EXPLORED}
TEST_PAIRS = multimnist.TEST_PAIRS
MNIST_TEST = 10_000  # test digits a link may name (a smaller test set is checked when the digits are drawn)
MAX_SHIFT = multimnist.MAX_SHIFT
OFFSET_DECIMALS = 2  # the pose sliders' step is 0.01
# Reset for each new input (the prediction, zero offsets): a link's values are applied after that reset.
PER_INPUT = (state.ROUTING_DIGIT, state.POSE_CLASS, *(state.POSE_DIM.format(d) for d in range(PAPER.digit_dim)))


def encode_image(x: torch.Tensor) -> str:
    """(1, 28, 28) in [0, 1] -> base64url of 784 uint8 pixels."""
    pixels = (x[0].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)  # (28, 28)
    return base64.urlsafe_b64encode(pixels.tobytes()).decode().rstrip("=")


def decode_image(text: str) -> torch.Tensor | None:
    """The inverse of encode_image; None for anything that is not exactly 784 pixels."""
    if len(text) > 4 * (SIDE * SIDE // 3 + 1):  # longer than any padding of 784 bytes: not decoded at all
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != SIDE * SIDE:
        return None
    pixels = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(1, SIDE, SIDE)
    return to_float(pixels)[0]  # (1, 28, 28)


# --- reading a link: pure, so the rules are tested without a page --------------------------------------------


@dataclass
class Link:
    """What a link asks for: session-state values, the input, and the parameters that could not be read."""

    values: dict[str, Any] = field(default_factory=dict)  # state key -> value
    tab: str | None = None
    image: torch.Tensor | None = None  # (1, 28, 28), from img
    index: int | None = None  # an MNIST test image, from i
    problems: list[str] = field(default_factory=list)  # "`name`: what it should be"


def _integer(text: str, low: int, high: int) -> int | None:
    try:
        number = int(text)
    except ValueError:
        return None
    return number if low <= number <= high else None


def _number(text: str, low: float, high: float) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) and low <= number <= high else None


def _offsets(text: str) -> list[float] | None:
    parts = text.split(",", PAPER.digit_dim)  # a 17th part means too many: the rest is never split
    if len(parts) != PAPER.digit_dim:
        return None
    numbers = [_number(part, -perturb.PAPER_RANGE, perturb.PAPER_RANGE) for part in parts]
    if any(n is None for n in numbers):
        return None
    return [round(n, OFFSET_DECIMALS) for n in numbers]


def _lab_rules() -> dict[str, tuple[str, Callable[[str], Any], str]]:
    rules = {}
    for name in lab.NAMES:
        low, high = lab.SWEEPS[name][0], lab.SWEEPS[name][-1]
        rules[name] = (
            state.LAB_PARAM.format(name),
            lambda text, low=low, high=high: _number(text, low, high),
            f"a number from {low:g} to {high:g}",
        )
    return rules


# name -> (state key, reader returning None for a bad value, what the value should be)
RULES: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "iters": (state.ROUTING_ITERS, lambda t: _integer(t, 1, MAX_ROUTING_ITERS), f"from 1 to {MAX_ROUTING_ITERS}"),
    "view": (state.ROUTING_VIEW, VIEW_NAMES.get, "one of " + ", ".join(VIEW_NAMES)),
    "iteration": (
        state.ROUTING_ITERATION,
        lambda t: _integer(t, 1, MAX_ROUTING_ITERS),
        f"from 1 to {MAX_ROUTING_ITERS}",
    ),
    "route": (state.ROUTING_DIGIT, lambda t: _integer(t, 0, 9), "a digit from 0 to 9"),
    "capsule": (state.INSPECT_CAPSULE, lambda t: _integer(t, 0, CAPSULES - 1), f"a capsule from 0 to {CAPSULES - 1}"),
    "stage": (state.GUIDE_STAGE, STAGE_NAMES.get, "one of " + ", ".join(STAGE_NAMES)),
    "pose": (state.POSE_CLASS, lambda t: _integer(t, 0, 9), "a digit from 0 to 9"),
    **_lab_rules(),
    "sweep": (state.LAB_SWEEP_OF, lambda t: t if t in lab.NAMES else None, "one of " + ", ".join(lab.NAMES)),
    "sweep_digit": (state.LAB_DIGIT, lambda t: _integer(t, 0, 9), "a digit from 0 to 9"),
    "two_src": (state.TWO_SOURCE, TWO_SOURCES.get, "one of " + ", ".join(TWO_SOURCES)),
    "pair": (state.TWO_PAIR, lambda t: _integer(t, 0, TEST_PAIRS - 1), f"a test pair from 0 to {TEST_PAIRS - 1}"),
    "two_iters": (state.TWO_ITERS, lambda t: _integer(t, 1, MAX_ROUTING_ITERS), f"from 1 to {MAX_ROUTING_ITERS}"),
    "also": (state.TWO_EXTRA, lambda t: _integer(t, 0, 9), "a digit from 0 to 9"),
}


# every name a capsviz link can hold; Streamlit's own embedding options pass through
NAMES = {*RULES, "digit", "digits", "shifts", "offsets", "tab", "model", "src", "i", "img", "embed", "embed_options"}
MAX_NAMED = 5  # a link of 2,000 unknown names gets one line, not 2,000
MAX_NAME_CHARS = 24  # of an unknown name, shown


def read(params: Mapping[str, str], *, runs: set[str], mnist_size: int | None) -> Link:
    """A link's parameters -> what to restore. runs: the run names this server has; mnist_size: how many MNIST
    test images it has (None: no MNIST here, so an index is taken as it is and the Explore tab says why)."""
    link = Link()
    for name, (key, reader, wanted) in RULES.items():
        if name in params:
            value = reader(params[name])
            if value is None:
                link.problems.append(f"`{name}`: not {wanted}")
            else:
                link.values[key] = value
    if "digit" in params:  # older links: one digit for the routing views and the pose
        digit = _integer(params["digit"], 0, 9)
        if digit is None:
            link.problems.append("`digit`: not a digit from 0 to 9")
        else:
            link.values.setdefault(state.ROUTING_DIGIT, digit)
            link.values.setdefault(state.POSE_CLASS, digit)
    _read_two_digits(params, link)
    if "offsets" in params:
        offsets = _offsets(params["offsets"])
        if offsets is None:
            link.problems.append(f"`offsets`: not {PAPER.digit_dim} numbers from -0.25 to 0.25")
        for d, offset in enumerate(offsets or []):
            link.values[state.POSE_DIM.format(d)] = offset
    iteration, iters = link.values.get(state.ROUTING_ITERATION), link.values.get(state.ROUTING_ITERS)
    if iteration is not None and iteration > (iters or PAPER.routing_iters):
        link.problems.append(f"`iteration`: more than `iters` ({iters or f'{PAPER.routing_iters} when not given'})")
        del link.values[state.ROUTING_ITERATION]
    if "tab" in params:
        link.tab = TABS.get(params["tab"])
        if link.tab is None:
            link.problems.append("`tab`: not one of " + ", ".join(TABS))
    _read_model(params, link, runs)
    _read_input(params, link, mnist_size)
    _unread(params, link)
    return link


def _unread(params: Mapping[str, str], link: Link) -> None:
    """Parameters this page reads nothing from: an input's part without its `src`, or a name capsviz never writes."""
    source = params.get("src")
    for name, needs in (("i", "mnist"), ("img", "image")):
        if name in params and source != needs:
            link.problems.append(f"`{name}`: read only with `src={needs}`")
    unknown = sorted(name for name in params if name not in NAMES)
    if unknown:
        shown = ", ".join(_shown_name(name) for name in unknown[:MAX_NAMED])
        more = f" and {len(unknown) - MAX_NAMED:,} more" if len(unknown) > MAX_NAMED else ""
        link.problems.append(f"{shown}{more}: not part of a capsviz link")


def _shown_name(name: str) -> str:
    """An unknown name as typed, in quotes (a comma inside it cannot pass for two names), cut with an ellipsis."""
    cut = name[:MAX_NAME_CHARS] + ("…" if len(name) > MAX_NAME_CHARS else "")
    return f"“{plain(cut, MAX_NAME_CHARS + 1)}”"


def _read_two_digits(params: Mapping[str, str], link: Link) -> None:
    """The by-class picture of the Two digits tab: which two test digits, and how far each is shifted."""
    if "digits" in params:
        parts = params["digits"].split(",")
        picked = [_integer(part, 0, MNIST_TEST - 1) for part in parts] if len(parts) == 2 else [None]
        if None in picked:
            link.problems.append(f"`digits`: not two MNIST test image indices from 0 to {MNIST_TEST - 1:,}")
        else:
            link.values[state.TWO_PICKED] = tuple(picked)
    if "shifts" in params:
        parts = params["shifts"].split(",")
        shifts = [_integer(part, -MAX_SHIFT, MAX_SHIFT) for part in parts] if len(parts) == 4 else [None]
        if None in shifts:
            link.problems.append(f"`shifts`: not 4 shifts from -{MAX_SHIFT} to {MAX_SHIFT} px")
        else:
            link.values.update({state.TWO_SHIFT.format(k): shift for k, shift in enumerate(shifts)})


def _read_model(params: Mapping[str, str], link: Link, runs: set[str]) -> None:
    model = params.get("model")
    if model is None:
        return
    if model == "shipped":
        link.values[state.CHECKPOINT_CHOICE] = SHIPPED
    elif model.startswith("run:") and model.removeprefix("run:") in runs:
        link.values[state.CHECKPOINT_CHOICE] = RUN_PREFIX + model.removeprefix("run:")
    else:
        link.problems.append("`model`: no such model on this server (the shipped model is shown)")


def _read_input(params: Mapping[str, str], link: Link, mnist_size: int | None) -> None:
    source = params.get("src")
    if source == "mnist":
        link.index = _integer(params.get("i", ""), 0, (mnist_size or 10**6) - 1)
        if link.index is None:
            last = f" (0 to {mnist_size - 1:,})" if mnist_size else ""
            link.problems.append(f"`i`: not the index of an MNIST test image{last}")
    elif source == "image":
        link.image = decode_image(params.get("img", ""))
        if link.image is None:
            link.problems.append("`img`: not a 28x28 image (784 pixels in base64url)")
    elif source is not None:
        link.problems.append("`src`: not mnist or image")


# --- the page's side -----------------------------------------------------------------------------------------


def restore() -> None:
    """Once per session, before any widget: set the view from the link; what cannot be read is reported."""
    if st.session_state.get(state.SHARE_RESTORED):
        return
    st.session_state[state.SHARE_RESTORED] = True
    split, _ = mnist_test() if st.query_params.get("src") == "mnist" else (None, None)
    runs = {path.parent.name for path in run_checkpoints()} if "model" in st.query_params else set()
    link = read(st.query_params.to_dict(), runs=runs, mnist_size=len(split) if split is not None else None)
    if link.problems:
        st.session_state[state.SHARE_PROBLEMS] = link.problems
    if link.tab is not None:
        st.session_state[state.TABS] = link.tab
    pending = {key: link.values.pop(key) for key in (*PER_INPUT, state.LAB_DIGIT) if key in link.values}
    st.session_state[state.SHARE_PENDING] = pending
    for key, value in {**link.values, **pending}.items():  # pending values too, for a tab that opens first
        state.put(key, value)
    if link.index is not None:
        state.put(state.INPUT_SOURCE, SAMPLE)
        state.put(state.SAMPLE_MODE, RANDOM)
        st.session_state[state.SAMPLE_INDEX] = link.index
        st.session_state[state.SAMPLE_PICKED_FOR] = (RANDOM, None, None)
        if split is not None:  # the lab can show it before the Explore tab runs
            x = split.images[link.index].float().div(255).unsqueeze(0)  # (1, 28, 28)
            st.session_state[state.LAB_INPUT] = ModelInput(x, label=int(split.labels[link.index]), index=link.index)
    elif link.image is not None:
        state.put(state.INPUT_SOURCE, DRAW)
        st.session_state[state.SHARE_IMAGE] = link.image
        st.session_state[state.LAB_INPUT] = ModelInput(link.image)


def apply_pending(keys: tuple[str, ...] = PER_INPUT) -> None:
    """After a new input reset the per-input controls: the link's values for them, once."""
    pending = st.session_state.get(state.SHARE_PENDING) or {}
    for key in keys:
        if key in pending:
            state.put(key, pending.pop(key))


def problems() -> None:
    """The link's parts that could not be read, by name, until dismissed."""
    found = st.session_state.get(state.SHARE_PROBLEMS)
    if not found:
        return
    with st.container(key="share_problems"):
        st.warning(
            "Part of this link could not be read and was left out; the rest of the view is restored.\n\n"
            + "\n".join(f"- {problem}" for problem in found),
            icon=":material/link_off:",
        )
        st.button("Dismiss", key=state.SHARE_DISMISS, on_click=st.session_state.pop, args=(state.SHARE_PROBLEMS,))


def _input_params(source: ModelInput | None) -> dict[str, str]:
    if source is None or source.x is None:
        return {}
    if source.index is not None:
        return {"src": "mnist", "i": str(source.index)}
    return {"src": "image", "img": encode_image(source.x)}


def _explore_params() -> dict[str, str]:
    """The Explore tab's controls; per-input ones only once an input has set them."""
    params = {}
    for name, key in (("view", state.ROUTING_VIEW), ("stage", state.GUIDE_STAGE)):
        names = VIEW_NAMES if name == "view" else STAGE_NAMES
        chosen = [link_name for link_name, label in names.items() if label == state.value(key)]
        if chosen:
            params[name] = chosen[0]
    for name, key in (("iteration", state.ROUTING_ITERATION), ("route", state.ROUTING_DIGIT),
                      ("capsule", state.INSPECT_CAPSULE), ("pose", state.POSE_CLASS)):  # fmt: skip
        if state.value(key) is not None:
            params[name] = str(int(state.value(key)))
    offsets = [float(state.value(state.POSE_DIM.format(d), 0.0)) for d in range(PAPER.digit_dim)]
    if any(offsets):
        params["offsets"] = ",".join(f"{o:.{OFFSET_DECIMALS}f}".rstrip("0").rstrip(".") for o in offsets)
    return params


def _lab_params() -> dict[str, str]:
    """The Claims lab's transform (its non-neutral parts), sweep and digit, once the lab has set them."""
    params = {}
    for name in lab.NAMES:
        value = state.value(state.LAB_PARAM.format(name))
        if value is not None and value != getattr(lab.Transform(), name):
            params[name] = f"{value:g}"
    if state.known(state.LAB_SWEEP_OF):
        params["sweep"] = str(state.value(state.LAB_SWEEP_OF))
    if state.value(state.LAB_DIGIT) is not None:
        params["sweep_digit"] = str(int(state.value(state.LAB_DIGIT)))
    return params


def _two_params() -> dict[str, str]:
    """The Two digits tab's picture and routing count, once the tab has set them."""
    params = {}
    source = state.value(state.TWO_SOURCE)
    name = next((name for name, label in TWO_SOURCES.items() if label == source), None)
    if name is not None:
        params["two_src"] = name
    if source == PAIR and state.value(state.TWO_PAIR) is not None:
        params["pair"] = str(int(state.value(state.TWO_PAIR)))
    picked = st.session_state.get(state.TWO_PICKED)
    if source == DIGITS and picked is not None:
        params["digits"] = ",".join(str(int(i)) for i in picked)
        params["shifts"] = ",".join(str(int(state.value(state.TWO_SHIFT.format(k), 0))) for k in range(4))
    if state.value(state.TWO_ITERS) is not None:
        params["two_iters"] = str(int(state.value(state.TWO_ITERS)))
    extra = state.value(state.TWO_EXTRA)
    if extra is not None and extra >= 0:  # "none" is the default, and no part of the link
        params["also"] = str(int(extra))
    return params


def publish() -> None:
    """Write the current view into the address bar (from any tab, and from the fragments that change it)."""
    params = {}
    tab = st.session_state.get(state.TABS)  # undrawn while presenting: what a page sent, unchecked
    name = next((name for name, label in TABS.items() if label == tab), "explore")
    if name != "explore":
        params["tab"] = name
    params.update(_input_params(st.session_state.get(state.LAB_INPUT)))
    choice = st.session_state.get(state.CHECKPOINT_CHOICE, SHIPPED)
    if choice == SHIPPED:
        params["model"] = "shipped"
    elif choice.startswith(RUN_PREFIX):
        params["model"] = "run:" + choice.removeprefix(RUN_PREFIX)
    if state.value(state.ROUTING_ITERS) is not None:
        params["iters"] = str(int(state.value(state.ROUTING_ITERS)))
    if "src" in params:
        params.update(_explore_params())
    params.update(_lab_params())
    params.update(_two_params())
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
