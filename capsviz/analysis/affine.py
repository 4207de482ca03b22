"""Affine transforms of 28x28 digits, an affNIST-like test set and one-transform sweeps, all in torch.

    from capsviz.analysis import affine
    x = to_float(split.images)                                 # (B, 1, 28, 28) in [0, 1]
    moved = affine.affine_set(x, seed=0)                       # the affNIST-like set: same seed, same images
    turned = affine.warp(x, affine.centred(affine.linear(rotation=torch.full((B,), 30.0))))

A transform is a forward 3x3 matrix in pixel coordinates: x to the right, y down, pixel (i, j)
covering [j, j+1] x [i, i+1], so the frame's centre is (14, 14). `warp` resamples with
`affine_grid` / `grid_sample` (bilinear, zeros outside, align_corners=False): a 90-degree turn
about the centre or an integer shift moves pixel centres onto pixel centres and is exact.

The affNIST-like set draws, per image and from a seeded generator, a rotation in +-20 degrees,
a shear in +-0.2 and a scale in 0.8-1.2 per axis (affNIST's ranges), then a translation drawn
uniformly among those that keep the ink inside the frame. affNIST applies its ranges to MNIST
digits on a 40x40 canvas; this set differs in three ways: the canvas stays 28x28 (capsviz's
MNIST models read 28x28), the translation is bounded by the ink's own box so no ink leaves the frame, and
resampling is bilinear. A digit whose transformed ink box would not fit the frame is shrunk just
enough to fit: 887 of the 10,000 test digits at seed 0, none by less than 0.81 (`shrink_factors`;
the robustness report counts them). Nothing is written to disk: the set is regenerated from MNIST test.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SIZE = 28  # the frame: MNIST's 28x28
ROTATION = 20.0  # degrees, +-
SHEAR = 0.2  # +-
SCALE = (0.8, 1.2)  # per axis
SWEEPS = {  # each transform alone, about the frame's centre, no translation
    "rotation": tuple(float(d) for d in range(-60, 61, 10)),  # degrees
    "scale": tuple(round(0.6 + 0.1 * i, 1) for i in range(9)),  # both axes, 0.6..1.4
    "shear": tuple(round(-0.6 + 0.1 * i, 1) for i in range(13)),  # x += shear * y, -0.6..0.6
}


def linear(
    *,
    rotation: torch.Tensor | None = None,
    scale_x: torch.Tensor | None = None,
    scale_y: torch.Tensor | None = None,
    shear: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rotation (degrees, counter-clockwise on screen) . shear (x += shear*y) . scale, each (B,) -> (B, 2, 2)."""
    given = [t for t in (rotation, scale_x, scale_y, shear) if t is not None]
    zeros = torch.zeros_like(given[0], dtype=torch.float64)
    rotation = zeros if rotation is None else rotation.double()
    scale_x = zeros + 1 if scale_x is None else scale_x.double()
    scale_y = zeros + 1 if scale_y is None else scale_y.double()
    shear = zeros if shear is None else shear.double()
    c, s = torch.cos(torch.deg2rad(rotation)), torch.sin(torch.deg2rad(rotation))
    rotate = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # (B, 2, 2); y points down
    sheared = torch.stack([torch.stack([zeros + 1, shear], -1), torch.stack([zeros, zeros + 1], -1)], -2)
    scaled = torch.diag_embed(torch.stack([scale_x, scale_y], -1))  # (B, 2, 2)
    return rotate @ sheared @ scaled


def centred(lin: torch.Tensor, source: torch.Tensor | None = None, target: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2, 2) linear part -> (B, 3, 3) forward map x -> lin (x - source) + target; both default to the centre."""
    centre = torch.full((lin.shape[0], 2), SIZE / 2, dtype=lin.dtype)
    source = centre if source is None else source
    target = centre if target is None else target
    forward = torch.eye(3, dtype=lin.dtype).repeat(lin.shape[0], 1, 1)  # (B, 3, 3)
    forward[:, :2, :2] = lin
    forward[:, :2, 2] = target - (lin @ source[:, :, None])[:, :, 0]
    return forward


def shift(dx: float, dy: float, batch: int = 1) -> torch.Tensor:
    """A pure translation by (dx, dy) pixels (right, down) -> (B, 3, 3)."""
    forward = torch.eye(3, dtype=torch.float64).repeat(batch, 1, 1)
    forward[:, 0, 2], forward[:, 1, 2] = dx, dy
    return forward


def warp(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) moved by forward pixel maps (B, 3, 3); bilinear, zeros outside -> (B, C, H, W)."""
    b, c, h, w = x.shape
    to_unit = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64)
    # grid_sample looks up, for each output pixel, where it came from: the inverse map, in [-1, 1] units
    theta = (to_unit @ torch.linalg.inv(forward.double().cpu()) @ torch.linalg.inv(to_unit))[:, :2]  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.device, x.dtype), [b, c, h, w], align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def ink_boxes(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 2, 2): per image [[x_min, x_max], [y_min, y_max]] of what bilinear resampling can
    spread its ink over (each inked pixel's centre +-1 px); the whole frame for an image without ink."""
    ink = x[:, 0] > 0  # (B, H, W)
    boxes = []
    for over in (1, 2):  # over rows: which columns (x) hold ink; then over columns: which rows (y)
        seen = ink.any(dim=over)  # (B, W), then (B, H)
        index = torch.arange(seen.shape[1], dtype=torch.float64, device=x.device)
        low = torch.where(seen, index, math.inf).amin(1) - 0.5  # centre (i + 0.5) - 1
        high = torch.where(seen, index, -math.inf).amax(1) + 1.5  # centre (i + 0.5) + 1
        empty = ~seen.any(1)
        boxes.append(torch.stack([low.masked_fill(empty, 0.0), high.masked_fill(empty, float(SIZE))], -1))
    return torch.stack(boxes, 1).cpu()  # (B, 2, 2)


def random_linear(n: int, *, seed: int) -> torch.Tensor:
    """n seeded draws of affNIST's rotation, shear and per-axis scale -> (n, 2, 2); the same seed, the same draws."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 4, generator=g, dtype=torch.float64)  # (n, 4) in [0, 1)
    low, high = SCALE
    return linear(
        rotation=(2 * u[:, 0] - 1) * ROTATION,
        shear=(2 * u[:, 1] - 1) * SHEAR,
        scale_x=low + (high - low) * u[:, 2],
        scale_y=low + (high - low) * u[:, 3],
    )


def shrink_factors(x: torch.Tensor, *, seed: int) -> torch.Tensor:
    """(B,) factor by which each image's drawn transform is shrunk so its ink fits the frame (1: not shrunk)."""
    return _fitted(x, seed)[1]


def affine_maps(x: torch.Tensor, *, seed: int) -> torch.Tensor:
    """The forward maps (B, 3, 3) of the affNIST-like set for images (B, 1, 28, 28): image i gets draw i."""
    lin, _, source_centre, reach = _fitted(x, seed)
    u = torch.rand(x.shape[0], 2, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)  # (B, 2)
    target = reach + u * (SIZE - 2 * reach)  # (B, 2): the moved box stays inside [0, SIZE]
    return centred(lin, source_centre, target)


def _fitted(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, ...]:
    """The drawn linear parts shrunk to fit (B, 2, 2), the factors (B,), ink-box centres and half sizes (B, 2)."""
    lin = random_linear(x.shape[0], seed=seed)  # (B, 2, 2)
    box = ink_boxes(x)  # (B, 2, 2)
    half = (box[:, :, 1] - box[:, :, 0]) / 2  # (B, 2)
    reach = (lin.abs() @ half[:, :, None])[:, :, 0]  # (B, 2): half size of the moved box, per axis
    fit = (SIZE / 2 / reach.amax(1)).clamp(max=1.0)  # (B,) shrink only what would not fit
    return lin * fit[:, None, None], fit, box.mean(-1), reach * fit[:, None]


def affine_set(x: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """The affNIST-like images of (B, 1, 28, 28) digits in [0, 1]: deterministic in `seed` and the images."""
    return warp(x, affine_maps(x, seed=seed))


def sweep_maps(name: str, value: float, batch: int) -> torch.Tensor:
    """One sweep point (SWEEPS[name] holds the values) as (B, 3, 3) maps about the frame's centre."""
    value = torch.full((batch,), float(value), dtype=torch.float64)
    by_name = {
        "rotation": {"rotation": value},
        "scale": {"scale_x": value, "scale_y": value},
        "shear": {"shear": value},
    }
    return centred(linear(**by_name[name]))
