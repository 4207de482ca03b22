"""Pose perturbation and the paper's perturbation grid (Sabour et al. 2017, Section 5.1, Figure 4).

Each of a digit capsule's 16 pose dimensions is nudged by -0.25 .. 0.25 in steps of 0.05 and
the nudged pose is fed to the decoder with the other nine capsules masked out:

    from capsviz.analysis.perturb import perturbation_grid, grid_to_png
    grid = perturbation_grid(model, pose, digit)   # (16, 11, 28, 28), one batched decode
    png = grid_to_png(grid)                        # bytes, 16 rows x 11 columns of digits

Shape letters: D = 16 pose dimensions, K perturbation values, H = W = 28 pixels.
Torch, numpy and pillow only; nothing here knows about the UI.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from capsviz.model import CapsNet

PAPER_RANGE = 0.25
PAPER_STEP = 0.05
GAP_GREY = 96  # separator colour between tiles in grid_to_png, 0..255


def grid_values() -> np.ndarray:
    """The paper's 11 perturbation values -0.25, -0.20, .., 0.25; the middle one is exactly 0."""
    count = round(2 * PAPER_RANGE / PAPER_STEP) + 1
    return np.linspace(-PAPER_RANGE, PAPER_RANGE, count)


def perturb(pose: torch.Tensor, deltas: Sequence[float] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Return a new (D,) tensor pose + deltas; `pose` itself is never modified."""
    shift = deltas if torch.is_tensor(deltas) else torch.as_tensor(np.asarray(deltas, dtype=np.float32))
    shift = shift.to(device=pose.device, dtype=pose.dtype)  # (D,)
    if shift.shape != pose.shape:
        raise ValueError(f"deltas must have shape {tuple(pose.shape)}, got {tuple(shift.shape)}")
    return pose + shift  # (D,), a fresh tensor


def _decode_batch(model: CapsNet, poses: torch.Tensor, digit: int) -> np.ndarray:
    """poses (B, D) read as capsule `digit` -> images (B, H, W) float32 in [0, 1]."""
    device = next(model.parameters()).device
    poses = poses.detach().to(device=device, dtype=torch.float32)
    classes = torch.full((poses.shape[0],), int(digit), dtype=torch.long, device=device)  # (B,)
    with torch.no_grad():
        images = model.decode(poses, classes)  # (B, C, H, W)
    return images[:, 0].cpu().numpy().astype(np.float32)  # (B, H, W)


def decode_pose(model: CapsNet, pose: torch.Tensor, digit: int) -> np.ndarray:
    """Decode one (D,) pose as the capsule of `digit` -> (H, W) float32 image in [0, 1]."""
    return _decode_batch(model, pose.reshape(1, -1), digit)[0]  # (1, D) -> (H, W)


def perturbation_grid(
    model: CapsNet, pose: torch.Tensor, digit: int, values: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """Figure 4: row d holds `pose` with dimension d shifted by each value, other dims unchanged.

    All D * K poses go through the decoder in one batch. Returns (D, K, H, W) float32.
    """
    values_t = torch.as_tensor(np.asarray(grid_values() if values is None else values, dtype=np.float32))  # (K,)
    pose = pose.detach().float().cpu().reshape(-1)  # (D,)
    d, k = pose.shape[0], values_t.shape[0]
    eye = torch.eye(d)  # (D, D): row d selects dimension d
    deltas = eye[:, None, :] * values_t[None, :, None]  # (D, 1, D) * (1, K, 1) -> (D, K, D)
    poses = pose[None, None, :] + deltas  # (D, K, D)
    images = _decode_batch(model, poses.reshape(d * k, d), digit)  # (D*K, H, W)
    return images.reshape(d, k, *images.shape[1:])  # (D, K, H, W)


def grid_to_png(grid: np.ndarray, scale: int = 2, gap: int = 2) -> bytes:
    """A (D, K, H, W) grid in [0, 1] -> PNG bytes: white-on-black tiles, `gap` grey pixels between.

    Each tile is upscaled `scale` times with nearest neighbour; the picture is
    D*H*scale + (D-1)*gap pixels high and K*W*scale + (K-1)*gap wide.
    """
    if grid.ndim != 4:
        raise ValueError(f"grid must be (rows, cols, H, W), got shape {grid.shape}")
    if scale < 1 or gap < 0:
        raise ValueError("scale must be >= 1 and gap >= 0")
    rows, cols, h, w = grid.shape
    pixels = (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)  # (D, K, H, W)
    pixels = pixels.repeat(scale, axis=2).repeat(scale, axis=3)  # (D, K, H*s, W*s)
    th, tw = h * scale, w * scale
    # Every tile owns a (tile + gap) block; the trailing gap of the last row and column is cut off.
    padded = np.full((rows * (th + gap), cols * (tw + gap)), GAP_GREY, dtype=np.uint8)
    blocks = padded.reshape(rows, th + gap, cols, tw + gap)  # (D, H*s+gap, K, W*s+gap), a view
    blocks[:, :th, :, :tw] = pixels.transpose(0, 2, 1, 3)  # (D, H*s, K, W*s)
    canvas = padded[: rows * (th + gap) - gap, : cols * (tw + gap) - gap]  # (D*H*s + (D-1)*gap, ...)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(canvas)).save(buffer, format="PNG")  # 2-D uint8 -> mode "L"
    return buffer.getvalue()


def labelled_grid_png(grid: np.ndarray, values: Sequence[float] | np.ndarray, digit: int, scale: int = 2) -> bytes:
    """`grid_to_png` with its axes written on it: "dim d" left of each row, each value above its column,
    and a title naming the digit, so the downloaded picture explains itself."""
    from PIL import ImageDraw, ImageFont

    tiles = Image.open(io.BytesIO(grid_to_png(grid, scale=scale)))
    rows, cols = grid.shape[:2]
    font = ImageFont.load_default(size=12)
    left, top, pad = 56, 44, 6
    canvas = Image.new("L", (tiles.width + left + pad, tiles.height + top + pad), 255)
    canvas.paste(tiles, (left, top))
    pen = ImageDraw.Draw(canvas)
    pen.text((left, 4), f"Digit {digit}: each row nudges one pose dimension by the value above it", font=font, fill=0)
    tile_h, tile_w = (tiles.height + 2) / rows, (tiles.width + 2) / cols  # tile + the 2-px gap
    for d in range(rows):
        pen.text((left - 4, top + (d + 0.5) * tile_h), f"dim {d}", font=font, fill=0, anchor="rm")
    for k, value in enumerate(values):
        pen.text((left + (k + 0.5) * tile_w, top - 4), f"{value:+.2f}", font=font, fill=0, anchor="ms")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


GREY_LEVELS = 255  # a pixel's full range, as image files count it
MOVE_SHOWN = 0.5  # px: the ink's centre moving less than this along an axis is not mentioned


def dimension_effects(grid: np.ndarray, input_ink: float) -> list[str]:
    """What each pose dimension measurably does to this input, from a (D, K, H, W) perturbation grid.

    Compares the decodes at the grid's two ends (-0.25 and +0.25 for the paper's grid), in units a
    reader can take literally: the mean pixel change in grey levels (0 to 255); the ink (the sum of
    the pixel values) decoded at each end as a share of `input_ink`, this input's own ink; and how
    far the ink's centre of mass moves, in pixels. A description, not a name.
    """
    low, high = grid[:, 0].astype(np.float64), grid[:, -1].astype(np.float64)  # (D, H, W) each
    change = np.abs(high - low).mean(axis=(1, 2)) * GREY_LEVELS  # (D,)
    ink = max(float(input_ink), 1e-6)
    labels = []
    for dim in range(grid.shape[0]):
        if np.abs(high[dim] - low[dim]).max() <= 1e-6:
            labels.append("no change")
            continue
        parts = [f"{change[dim]:.0f} grey levels", f"ink {low[dim].sum() / ink:.0%} → {high[dim].sum() / ink:.0%}"]
        move = _centre_move(low[dim], high[dim])
        if move:
            parts.append(move)
        labels.append(" · ".join(parts))
    return labels


def _centre_move(before: np.ndarray, after: np.ndarray) -> str:
    """'moves 2.0 px up, 1.5 px right', 'stays put', or '' when either image has no ink."""
    if before.sum() <= 1e-6 or after.sum() <= 1e-6:
        return ""
    rows, cols = np.mgrid[0 : before.shape[0], 0 : before.shape[1]]  # (H, W) each
    dy, dx = (float((after * a).sum() / after.sum() - (before * a).sum() / before.sum()) for a in (rows, cols))
    steps = []
    if abs(dy) >= MOVE_SHOWN:
        steps.append(f"{abs(dy):.1f} px {'down' if dy > 0 else 'up'}")  # rows grow downwards
    if abs(dx) >= MOVE_SHOWN:
        steps.append(f"{abs(dx):.1f} px {'right' if dx > 0 else 'left'}")
    return "moves " + ", ".join(steps) if steps else "stays put"


def as_each_digit(model: CapsNet, poses: torch.Tensor) -> np.ndarray:
    """(J, D) digit-capsule poses -> (J, H, W): capsule j's own pose decoded as digit j, one batch.

    The input "read as" each digit: what the decoder draws from each capsule when it is the one kept.
    """
    j = poses.shape[0]
    device = next(model.parameters()).device
    classes = torch.arange(j, device=device)  # (J,)
    with torch.no_grad():
        images = model.decode(poses.detach().to(device=device, dtype=torch.float32), classes)  # (J, C, H, W)
    return images[:, 0].cpu().numpy().astype(np.float32)  # (J, H, W)


def alikeness(images: np.ndarray, winner: int) -> tuple[float, float]:
    """images (J, H, W) in [0, 1] -> (the mean absolute pixel difference between two of the other capsules'
    images, averaged over their pairs; the same between the winner's image and each other one)."""
    others = np.delete(images, winner, axis=0)  # (J-1, H, W)
    k = len(others)
    pairs = [np.abs(others[a] - others[b]).mean() for a in range(k) for b in range(a + 1, k)]
    to_winner = np.abs(others - images[winner]).mean(axis=(1, 2))  # (J-1,)
    return float(np.mean(pairs)), float(to_winner.mean())
