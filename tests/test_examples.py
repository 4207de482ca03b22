"""capsviz.examples: the lesson's examples are canvas strokes, and the shipped model reads them as they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from capsviz.examples import BOX, EXAMPLES, Example, canvas_objects, canvas_points, example_input, render


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    return model


def lengths_of(model, name: str, iters: int = 3) -> np.ndarray:
    with torch.no_grad():
        return model(example_input(EXAMPLES[name])[None], routing_iters=iters).lengths[0].numpy()


def test_the_shipped_model_reads_the_clean_rotated_and_thin_examples_as_their_digits(shipped):
    for name, digit in (("clean_3", 3), ("rotated_7", 7), ("thin_1", 1)):
        lengths = lengths_of(shipped, name)
        assert int(lengths.argmax()) == digit and lengths[digit] > 0.7, (name, lengths.round(3))


def test_the_ambiguous_example_makes_two_capsules_long_at_once(shipped):
    lengths = lengths_of(shipped, "ambiguous_4_9")
    assert set(np.argsort(-lengths)[:2].tolist()) == {4, 9}
    assert lengths[4] > 0.5 and lengths[9] > 0.5, lengths.round(3)  # lengths are not a softmax


def test_rotation_turns_the_strokes_counter_clockwise_about_the_box_centre():
    left, top, right, bottom = BOX
    cx, cy = (left + right) / 2, (top + bottom) / 2
    turned = canvas_points(Example("t", "n", (((1.0, 0.5),),), rotation=90.0))[0][0]  # the box's right middle
    assert turned == pytest.approx((cx, cy - (right - left) / 2), abs=0.05)  # straight up on screen


def test_examples_become_canvas_strokes_and_a_non_blank_model_input():
    for example in EXAMPLES.values():
        objects = canvas_objects(example)
        assert len(objects) == len(example.strokes)
        assert all(
            o["type"] == "path" and o["path"][0][0] == "M" and o["strokeWidth"] == example.width for o in objects
        )
        assert render(example).size == (280, 280)
        x = example_input(example)
        assert x.shape == (1, 28, 28) and float(x.max()) > 0.5
    assert EXAMPLES["thin_1"].width < EXAMPLES["clean_3"].width
