"""Example inputs a lesson starts from: digits drawn as strokes, so they load offline (no MNIST needed).

    example = EXAMPLES["clean_3"]
    objects = canvas_objects(example)       # the canvas's stroke format: the drawing stays editable
    x = example_input(example)              # (1, 28, 28) what the model reads, via capsviz.preprocess

Each example is a few strokes in a unit box, placed on the app's 280x280 black canvas with a
pen width, and optionally rotated about the box's centre. What the shipped model reads for each
is pinned by tests/test_examples.py; `python -m capsviz.examples` prints it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

from capsviz.preprocess import to_mnist

CANVAS_SIDE = 280  # px, the app's drawing canvas
BOX = (70.0, 40.0, 210.0, 240.0)  # left, top, right, bottom: where a digit's unit box lands on the canvas
SUPERSAMPLE = 4  # drawn 4x larger and shrunk: anti-aliased like the browser's canvas, so both read alike
Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 24) -> list[Point]:
    """Points along an ellipse from `start` to `end` degrees (y grows downwards, so 90 is the bottom)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


@dataclass(frozen=True)
class Example:
    title: str  # the button's label
    note: str  # one line of what to look at
    strokes: tuple[tuple[Point, ...], ...]  # in the unit box: x to the right, y downwards
    width: float = 20.0  # pen width in canvas pixels (the canvas's default is 20)
    rotation: float = 0.0  # degrees, counter-clockwise on screen, about the box's centre


THREE = (tuple(_arc(0.45, 0.25, 0.33, 0.25, 210, 450)), tuple(_arc(0.45, 0.73, 0.38, 0.27, 270, 500)))
# A 4 with a low bar and its top half closed: halfway to a 9, and the shipped model reads both.
FOUR_NINE = (
    ((0.30, 0.02), (0.10, 0.65), (0.85, 0.65)),
    ((0.72, 0.02), (0.72, 1.0)),
    ((0.35, 0.02), (0.72, 0.02)),
)
SEVEN = (((0.05, 0.0), (0.95, 0.0), (0.40, 1.0)),)
ONE = (((0.50, 0.0), (0.50, 1.0)),)

EXAMPLES: dict[str, Example] = {
    "clean_3": Example("A clean 3", "One capsule long, the others short.", THREE),
    "ambiguous_4_9": Example(
        "An ambiguous 4/9", "Two capsules compete: lengths are not probabilities, both can be long.", FOUR_NINE
    ),
    "rotated_7": Example("A rotated 7", "Turned 35°: does the 7 capsule still win?", SEVEN, rotation=35.0),
    "thin_1": Example("A thin 1", "A hairline stroke: the pose carries the thickness.", ONE, width=6.0),
}


def canvas_points(example: Example) -> list[list[Point]]:
    """Each stroke's points in canvas pixels, rotated about the box's centre."""
    left, top, right, bottom = BOX
    cx, cy = (left + right) / 2, (top + bottom) / 2
    angle = math.radians(example.rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    strokes = []
    for stroke in example.strokes:
        points = []
        for u, v in stroke:
            dx, dy = left + u * (right - left) - cx, top + v * (bottom - top) - cy
            # counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
            points.append((round(cx + dx * cos + dy * sin, 1), round(cy - dx * sin + dy * cos, 1)))
        strokes.append(points)
    return strokes


def canvas_objects(example: Example) -> list[dict]:
    """The strokes in the canvas component's format (capsviz.ui.canvas): white paths, time stamp 0."""
    return [
        {
            "type": "path",
            "stroke": "#FFFFFF",
            "strokeWidth": example.width,
            "t": 0,
            "path": [["M", *points[0]], *(["L", *p] for p in points[1:])],
        }
        for points in canvas_points(example)
    ]


def render(example: Example) -> Image.Image:
    """The 280x280 drawing the canvas shows: white strokes with round ends and joins on black, drawn at
    SUPERSAMPLE times the size and shrunk, so its edges are anti-aliased as the page's canvas draws them."""
    k = SUPERSAMPLE
    big = Image.new("L", (CANVAS_SIDE * k, CANVAS_SIDE * k), 0)
    pen = ImageDraw.Draw(big)
    r = example.width * k / 2
    for points in canvas_points(example):
        points = [(x * k, y * k) for x, y in points]
        pen.line(points, fill=255, width=round(example.width * k), joint="curve")
        for x, y in (points[0], points[-1]):  # round caps, as the canvas draws them
            pen.ellipse((x - r, y - r, x + r, y + r), fill=255)
    grey = big.resize((CANVAS_SIDE, CANVAS_SIDE), Image.Resampling.BOX)
    return Image.merge("RGBA", (grey, grey, grey, Image.new("L", grey.size, 255)))


def example_input(example: Example) -> torch.Tensor:
    """(1, 28, 28) in [0, 1]: the example as the model reads it."""
    x = to_mnist(render(example))
    if x is None:  # every example has ink: a blank one is a broken definition
        raise ValueError(f"the example {example.title!r} renders blank")
    return x


def main() -> None:
    """`python -m capsviz.examples`: what the shipped model reads for each example, its two longest capsules."""
    from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint

    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    for example in EXAMPLES.values():
        with torch.no_grad():
            lengths = model(example_input(example)[None]).lengths[0]  # (J,)
        first, second = lengths.argsort(descending=True)[:2].tolist()
        print(f"{example.title}: {first} {lengths[first]:.3f}, then {second} {lengths[second]:.3f}")


if __name__ == "__main__":
    main()
