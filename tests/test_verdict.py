"""The page's wording for a set of capsule lengths, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from capsviz.verdict import INDEPENDENT, NEAR_TIE, SURE, TIE, TWO, UNSURE, verdict


def lengths(**by_digit: float) -> np.ndarray:
    """(10,) lengths of 0.05, except the digits named: lengths(d8=0.88, d0=0.53)."""
    out = np.full(10, 0.05)
    for name, value in by_digit.items():
        out[int(name[1:])] = value
    return out


def test_two_capsules_above_one_half_say_the_model_sees_both_and_that_lengths_are_not_a_softmax():
    v = verdict(lengths(d8=0.88, d0=0.53))
    assert (v.kind, v.label, v.value) == (TWO, "Two digits?", "8 and 0")
    assert "Capsules 8 (0.880) and 0 (0.530) are both longer than 0.5" in v.note
    assert "the model sees an 8 and a 0." in v.note
    assert INDEPENDENT in v.note and "not a softmax" in INDEPENDENT


def test_three_capsules_above_one_half_are_listed_longest_first():
    v = verdict(lengths(d4=0.6, d1=0.9, d7=0.7))
    assert v.kind == TWO and v.value == "1 and 7"
    assert "1 (0.900), 7 (0.700) and 4 (0.600) are all longer than 0.5: the model sees a 1, a 7 and a 4." in v.note


def test_a_near_tie_states_the_gap_and_the_margin():
    """0.505 against 0.490: 0.015 apart, under the margin of 0.05."""
    v = verdict(lengths(d8=0.505, d6=0.49))
    assert (v.kind, v.label, v.value) == (TIE, "Near-tie", "8 or 6")
    assert "Capsules 8 (0.505) and 6 (0.490) differ by 0.015, less than the near-tie margin of 0.05" in v.note
    assert INDEPENDENT in v.note


@pytest.mark.parametrize("top,kind", [(0.509, TIE), (0.51, SURE), (0.6, SURE)])
def test_the_near_tie_margin_is_a_strict_gap_of_0_05_as_shown(top, kind):
    """Against 0.46: 0.509 is 0.049 ahead, a tie; 0.51 is 0.050 ahead as shown (0.04999999999999999 in floating
    point), not one."""
    assert NEAR_TIE == 0.05
    assert verdict(lengths(d2=top, d9=0.46)).kind == kind


def test_a_clear_winner_is_a_plain_prediction():
    v = verdict(lengths(d3=0.9, d5=0.1))
    assert (v.kind, v.label, v.value, v.note) == (SURE, "Prediction", "3", "capsule 3 has length 0.900")


def test_no_capsule_above_one_half_is_not_sure_and_names_a_near_tie_when_there_is_one():
    tied = verdict(lengths(d2=0.31, d7=0.30))
    assert (tied.kind, tied.label, tied.value) == (UNSURE, "Not sure: best guess", "2")
    assert "No capsule says its digit is there" in tied.note and "differ by 0.010" in tied.note
    clear = verdict(lengths(d2=0.4, d7=0.2))
    assert clear.kind == UNSURE and "near-tie" not in clear.note
