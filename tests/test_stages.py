"""The guided path's measurements: Conv1 maps, the primary capsules' turns and what their lengths say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsviz.analysis import stages
from capsviz.model import CapsNet

from conftest import TINY_CAPSNET


def test_angles_between_capsules_on_hand_computed_vectors():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    b = np.array([[0.0, 3.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    turned = stages.angles(a, b)
    assert turned[:3] == pytest.approx([90.0, 180.0, 45.0], abs=1e-4)
    assert np.isnan(turned[3])  # a zero vector has no direction
    assert turned[4] == pytest.approx(0.0, abs=1e-3)  # length does not count, only direction


def test_a_blank_input_turns_no_primary_capsule():
    torch.manual_seed(0)
    model = CapsNet(TINY_CAPSNET).eval()
    g = TINY_CAPSNET.primary_grid
    still = stages.turn_from_blank(model, torch.zeros(1, 28, 28), g)
    assert still.shape == (TINY_CAPSNET.primary_types, g, g) and np.nanmax(still) < 0.1
    x = torch.zeros(1, 28, 28)
    x[0, 6:22, 12:16] = 1.0  # a stroke
    moved = stages.turn_from_blank(model, x, g)
    assert np.nanmax(moved) > 1.0


def test_length_note_says_saturated_lengths_mark_nothing():
    """9 of 10 capsules longer than 0.5: 90.0%, at the saturation share, so length is no sign of a part."""
    note = stages.length_note(np.array([0.99] * 9 + [0.1]))
    assert note.startswith("On this input 90.0% of the 10 primary capsules are longer than 0.5 (median length 0.99)")
    assert "does not say whether a part is there, its direction does" in note


def test_length_note_for_a_model_whose_lengths_vary():
    note = stages.length_note(np.array([0.9] * 5 + [0.1] * 5))
    assert "50.0% of the 10" in note and "median length 0.50" in note and "can mark a part" in note
