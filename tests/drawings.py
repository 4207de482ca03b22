"""Canvas-style digit drawings: white strokes on a black 280x280 canvas, like the app's.

Each digit is a few hand-placed strokes in a unit square, drawn with round pen tips at a
given position, size and stroke width, so tests can draw any digit anywhere.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def _arc(cx, cy, rx, ry, start, end, steps=24):
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


# Strokes in a unit box: x to the right, y downwards.
STROKES = {
    0: [_arc(0.5, 0.5, 0.32, 0.48, 0, 360, 40)],
    1: [[(0.42, 0.15), (0.55, 0.0), (0.55, 1.0)]],
    2: [_arc(0.5, 0.28, 0.32, 0.28, 200, 360) + [(0.75, 0.45), (0.15, 1.0), (0.9, 1.0)]],
    3: [_arc(0.45, 0.25, 0.33, 0.25, 210, 450), _arc(0.45, 0.73, 0.38, 0.27, 270, 500)],
    4: [[(0.6, 0.0), (0.05, 0.68), (0.95, 0.68)], [(0.68, 0.3), (0.68, 1.0)]],
    5: [[(0.85, 0.0), (0.2, 0.0), (0.15, 0.42)] + _arc(0.45, 0.68, 0.38, 0.32, 240, 480)],
    6: [[(0.7, 0.0), (0.3, 0.35), (0.15, 0.7)] + _arc(0.48, 0.7, 0.33, 0.3, 180, 540)],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.35, 1.0)]],
    8: [_arc(0.5, 0.25, 0.28, 0.25, 90, 450), _arc(0.5, 0.74, 0.35, 0.26, -90, 270)],
    9: [_arc(0.5, 0.3, 0.32, 0.3, 0, 360), [(0.82, 0.3), (0.8, 0.6), (0.6, 1.0)]],
}


def draw_digit(
    digit: int,
    *,
    size: int = 280,
    box: tuple[float, float, float, float] = (60, 40, 220, 240),
    width: int = 18,
    transparent: bool = False,
) -> Image.Image:
    """RGBA canvas with `digit` drawn in `box` (left, top, right, bottom) in white."""
    background = (0, 0, 0, 0) if transparent else (0, 0, 0, 255)
    image = Image.new("RGBA", (size, size), background)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    for stroke in STROKES[digit]:
        points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in stroke]
        pen.line(points, fill=(255, 255, 255, 255), width=width, joint="curve")
        r = width / 2
        for x, y in (points[0], points[-1]):
            pen.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255, 255))
    return image


# Photographs: dark ink on paper under a light that is not even, plus sensor noise. Each light is the
# paper's brightness over the picture, with y and x in 0..1 (down, right).
LIGHTS = {
    "even": lambda y, x: np.full_like(x, 0.8),
    "gradient": lambda y, x: 0.95 - 0.6 * (0.6 * x + 0.4 * y),  # 0.95 top left to 0.35 bottom right
    "shadow": lambda y, x: 0.85 - 0.5 / (1 + np.exp(-(x - 0.7) / 0.01)),  # the right edge in shadow
    "corner shadow": lambda y, x: 0.9 - 0.55 / (1 + np.exp(-(x + y - 1.3) / 0.02)),  # a diagonal edge
    "vignette": lambda y, x: 0.9 - 1.2 * ((x - 0.5) ** 2 + (y - 0.5) ** 2),  # dark corners
}


def photograph(ink: np.ndarray, light: str, *, noise: float = 0.0, contrast: float = 0.7, seed: int = 0) -> np.ndarray:
    """ink (H, W) in [0, 1] as a greyscale uint8 photo: paper lit by LIGHTS[light], the ink absorbing
    `contrast` of the light that falls on it, plus Gaussian noise of standard deviation `noise`."""
    h, w = ink.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    paper = LIGHTS[light](y / h, x / w)  # (H, W)
    grey = paper * (1 - contrast * ink) + np.random.default_rng(seed).normal(0.0, noise, ink.shape)
    return (np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8)


def drawn_ink(digit: int, **placement) -> np.ndarray:
    """`draw_digit` as an ink map (280, 280) in [0, 1]."""
    return np.asarray(draw_digit(digit, **placement).convert("L"), dtype=np.float64) / 255
