"""capsviz.analysis.compare: which counts the side-by-side view compares, and its measured sentence."""

from __future__ import annotations

import numpy as np

from capsviz.analysis import compare


def test_comparison_counts_use_the_models_count_or_the_papers_when_it_routes_once():
    assert compare.compared_counts(3, 5) == (1, 3)
    assert compare.compared_counts(5, 5) == (1, 5)
    assert compare.compared_counts(1, 5) == (1, 3)  # nothing to compare with 1: the paper's 3
    assert compare.compared_counts(4, 2) == (1, 2)  # never more than the trace holds


def test_comparison_text_names_winners_lengths_and_gaps():
    lengths = np.zeros((3, 10))
    lengths[0, [4, 9]] = (0.30, 0.25)
    lengths[2, [4, 9]] = (0.55, 0.65)
    text = compare.comparison_text(lengths, routed=3)
    assert "capsule 4 is longest at 0.300, then 9 at 0.250" in text
    assert "after 3 iterations capsule 9 is at 0.650, then 4 at 0.550" in text
    assert "the winner changes from 4 to 9" in text and "goes from 0.050 to 0.100" in text
    lengths[2, 4] = 0.7
    assert "the same digit wins" in compare.comparison_text(lengths, routed=3)
