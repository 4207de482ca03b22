"""What the page says about one input's digit-capsule lengths: a prediction, doubt, two digits, or a near-tie.

    from capsviz.verdict import verdict
    v = verdict(lengths)          # lengths: (J,) digit-capsule lengths
    v.label, v.value, v.note      # "Two digits?", "8 and 0", "Capsules 8 (0.88) and 0 (0.53) ..."

Capsule lengths are independent (each squashed on its own, not a softmax over the digits), so
two capsules can both say their digit is there; the wording says so whenever it happens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsviz.analysis.inference import CONFIDENT_LENGTH

NEAR_TIE = 0.05  # the two longest capsules closer than this in length: the model cannot tell them apart
SURE, UNSURE, TWO, TIE = "sure", "unsure", "two", "tie"
INDEPENDENT = (
    "Capsule lengths are independent, not a softmax: each says on its own whether its digit is there, "
    "and they need not add up to 1."
)


@dataclass(frozen=True)
class Verdict:
    kind: str  # SURE, UNSURE, TWO or TIE
    label: str  # the headline's label
    value: str  # the headline's value: a digit, "8 and 0" or "8 or 6"
    note: str  # one or two sentences under the headline, with the lengths they rest on


def verdict(lengths: np.ndarray) -> Verdict:
    """The wording for (J,) capsule lengths, J >= 2. In order: two or more capsules longer than
    CONFIDENT_LENGTH (TWO); none longer (UNSURE, saying so when the two longest are within NEAR_TIE);
    the two longest within NEAR_TIE (TIE); else SURE.
    """
    lengths = np.asarray(lengths, dtype=np.float64)  # (J,)
    first, second = (int(d) for d in np.argsort(-lengths, kind="stable")[:2])
    top, runner = float(lengths[first]), float(lengths[second])
    gap = round(top - runner, 3)  # as shown: the sentence and the test never disagree
    tie = (
        f"Capsules {first} ({top:.3f}) and {second} ({runner:.3f}) differ by {gap:.3f}, less than the "
        f"near-tie margin of {NEAR_TIE}"
    )
    if runner > CONFIDENT_LENGTH:
        return _two(lengths, first, second)
    if top <= CONFIDENT_LENGTH:
        note = (
            f"No capsule says its digit is there: the longest, {first}, is {top:.2f} long (a present digit's "
            f"capsule is longer than {CONFIDENT_LENGTH}). Try a clearer, centred digit."
        )
        return Verdict(UNSURE, "Not sure: best guess", str(first), note + (f" {tie}." if gap < NEAR_TIE else ""))
    if gap < NEAR_TIE:
        return Verdict(
            TIE, "Near-tie", f"{first} or {second}", f"{tie}: the model cannot tell them apart. {INDEPENDENT}"
        )
    return Verdict(SURE, "Prediction", str(first), f"capsule {first} has length {top:.3f}")


def _two(lengths: np.ndarray, first: int, second: int) -> Verdict:
    """Two (or more) capsules above CONFIDENT_LENGTH: the model sees each of those digits."""
    present = [int(d) for d in np.argsort(-lengths, kind="stable") if lengths[d] > CONFIDENT_LENGTH]  # longest first
    listed = _and([f"{d} ({lengths[d]:.3f})" for d in present])
    both = "both" if len(present) == 2 else "all"
    note = (
        f"Capsules {listed} are {both} longer than {CONFIDENT_LENGTH}: the model sees "
        f"{_and([_a(d) for d in present])}. {INDEPENDENT}"
    )
    return Verdict(TWO, "Two digits?", f"{first} and {second}", note)


def _and(items: list[str]) -> str:
    """'x and y', 'x, y and z'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


def _a(digit: int) -> str:
    """'a 0', 'an 8': the article as the digit is spoken."""
    return f"an {digit}" if digit == 8 else f"a {digit}"
