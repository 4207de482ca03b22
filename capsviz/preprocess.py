"""Turn a drawing, photo or scan into the 28x28 image an MNIST model expects.

MNIST digits were size-normalised to fit a 20x20 box (aspect ratio kept, anti-aliased)
and centred by centre of mass in a 28x28 image, white ink on black. `to_mnist` applies
the same steps to any input, each a small function below:

    ink_map        alpha-aware greyscale + polarity: ink is 1, background 0
    drop_specks    erase stray dots far smaller than the digit (dust, a slip of the pen)
    ink_bbox       the bounding box of the ink (None when the input is blank)
    fit_box        resize the crop so its longer side is 20 px, anti-aliased
    center_of_mass_paste   paste into 28x28 with the centre of mass at the centre

    from capsviz.preprocess import to_mnist
    x = to_mnist(Image.open("digit.png"))   # (1, 28, 28) float in [0, 1], or None if blank

`to_two_digits` does the same for an image of two overlapping digits, onto the 36x36
canvas of `capsviz.multimnist`.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from capsviz.multimnist import CANVAS

OUTPUT_SIZE = 28
BOX_SIZE = 20
MAX_INPUT_SIDE = 1024  # larger photos are shrunk first; MNIST needs 20 px
MAX_INPUT_PIXELS = 4096 * 4096  # refused before decoding (64 MB as RGBA); JPEGs are decoded at a reduced scale
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16/32-bit greyscale: scaled, never clipped at 255
INK_THRESHOLD = 0.25  # fraction of the ink contrast that counts as ink for the bounding box
MIN_CONTRAST = 0.15  # weaker than this between ink and background: blank
MIN_INK_PIXELS = 12  # fewer ink pixels than this (at input resolution): blank
MIN_INK_FRACTION = 1e-4
SPECK_FRACTION = 0.02  # connected ink blobs under 2% of all ink are specks
COMPONENT_GRID = 96  # specks are found on a grid of at most this many cells a side
TWO_DIGIT_BOX = 23  # median longer side of the ink box (ink >= INK_THRESHOLD) of the MultiMNIST test composites


def to_mnist(image: Image.Image | np.ndarray | bytes) -> torch.Tensor | None:
    """Any drawing / upload -> (1, 28, 28) float tensor in [0, 1], or None when blank.

    Raises ValueError for input that is not an image at all.
    """
    return _fit(drop_specks(ink_map(image)), BOX_SIZE, OUTPUT_SIZE)


def to_two_digits(image: Image.Image | np.ndarray | bytes) -> torch.Tensor | None:
    """An image of two overlapping digits -> (1, 36, 36) float in [0, 1] like a MultiMNIST composite, or None
    when blank. A 36x36 input is the canvas already (only its polarity is fixed); any other size is cropped
    to its ink, fitted to TWO_DIGIT_BOX and centred by mass."""
    ink = ink_map(image)  # (H, W) in [0, 1]
    if ink.shape == (CANVAS, CANVAS):
        return None if ink_bbox(ink) is None else torch.from_numpy(np.ascontiguousarray(ink)).float().unsqueeze(0)
    return _fit(drop_specks(ink), TWO_DIGIT_BOX, CANVAS)


def _fit(ink: np.ndarray, box_size: int, size: int) -> torch.Tensor | None:
    """Ink (H, W) -> (1, size, size): its bounding box fitted to box_size, centred by mass; None when blank."""
    box = ink_bbox(ink)
    if box is None:
        return None
    top, left, bottom, right = box
    crop = ink[top:bottom, left:right]
    fitted = fit_box(crop, box_size)  # (h, w), max(h, w) == box_size
    return torch.from_numpy(center_of_mass_paste(fitted, size)).unsqueeze(0)


def is_blank(image: Image.Image | np.ndarray | bytes) -> bool:
    """True where `to_mnist` finds no digit: every source (canvas, upload, link) is judged the same way."""
    return ink_bbox(drop_specks(ink_map(image))) is None


def displayable(pil: Image.Image) -> Image.Image:
    """An 8-bit copy to show (RGB, or RGBA with its transparency): a 16/32-bit scan scaled by its own depth,
    not clipped at 255 (which shows it all white)."""
    if pil.mode in WIDE_MODES:
        pil = Image.fromarray((np.asarray(_unit_float(pil)) * 255 + 0.5).astype(np.uint8))  # mode "L"
    return pil.convert("RGBA" if "A" in pil.getbands() else "RGB")


def load_image(image: Image.Image | np.ndarray | bytes) -> Image.Image:
    """Accept a PIL image, an array (H, W), (H, W, 3|4), or encoded bytes (PNG, JPEG...)."""
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)  # phone photos: honour the orientation tag
    if isinstance(image, (bytes, bytearray)):
        return open_image(bytes(image))
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(f"expected an image array (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("empty image")
    if array.dtype != np.uint8:
        array = np.nan_to_num(array.astype(np.float64))
        scale = 255.0 if array.max() <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


def open_image(source: bytes | str | os.PathLike) -> Image.Image:
    """Decode an image file or its bytes; its pixel count is checked from the header, before decoding.

    Raises ValueError (with the reason) for anything that is not a readable, reasonably sized image.
    """
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the size is checked here, far lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with opened:
            if opened.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still leaves 1024 px
                opened.draft(opened.mode, (MAX_INPUT_SIDE, MAX_INPUT_SIDE))
            width, height = opened.size
            if width * height > MAX_INPUT_PIXELS:
                raise ValueError(
                    f"the image is {width}x{height} pixels; capsviz reads at most {MAX_INPUT_PIXELS:,} "
                    "(4096x4096): shrink it first"
                )
            opened.load()
            return ImageOps.exif_transpose(opened)
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable image: {exc}") from None


def _unit_float(pil: Image.Image) -> Image.Image:
    """16/32-bit greyscale -> mode "F" in [0, 1], by its own bit depth (Pillow's "L" would clip at 255)."""
    array = np.nan_to_num(np.asarray(pil, dtype=np.float64))
    top = float(array.max(initial=0.0))
    if pil.mode.startswith("I;16"):
        full = 65535.0
    else:  # "I" or "F": the smallest usual range that holds the values
        full = next((r for r in (1.0 if pil.mode == "F" else 255.0, 255.0, 65535.0) if top <= r), top)
    return Image.fromarray(np.clip(array / full, 0, 1).astype(np.float32))  # mode "F"


def ink_map(image: Image.Image | np.ndarray | bytes) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 where there is ink, 0 on the background, whatever the polarity.

    Strokes on a transparent background (a canvas: under half the picture opaque, or all of
    one colour) have their alpha channel as the ink; a mostly opaque picture with contrast of
    its own (a clipped photo) has its transparent parts filled with its paper colour.
    Otherwise the background level is the median of the border pixels: a light border means
    dark ink on paper (the greyscale is inverted), a dark one light ink, unless nothing in
    the picture stands out on that side while something does on the other (dark ink on dim
    paper, chalk on a light board). The background level is then subtracted and the
    contrast stretched to [0, 1].
    """
    pil = load_image(image)
    if pil.mode in WIDE_MODES:
        pil = _unit_float(pil)
    if max(pil.size) > MAX_INPUT_SIDE:
        pil = pil.copy()
        pil.thumbnail((MAX_INPUT_SIDE, MAX_INPUT_SIDE), Image.Resampling.BOX)
    if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
        rgba = np.asarray(pil.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[:, :, 3]
        opaque = alpha >= 0.5
        luminance = _luminance(rgba[:, :, :3])  # (H, W)
        if (~opaque).mean() > 0.01 and (opaque.mean() < 0.5 or _spread(luminance[opaque]) < MIN_CONTRAST):
            return _stretch(alpha, floor=0.0)  # strokes on a transparent background: ink in any colour
        paper = float(np.median(luminance[opaque])) if opaque.any() else 0.0
        grey = luminance * alpha + paper * (1.0 - alpha)  # transparent corners take the paper's colour
    elif pil.mode == "F":
        grey = np.asarray(pil, dtype=np.float32)
    else:
        grey = np.asarray(pil.convert("L"), dtype=np.float32) / 255.0
    background = _border_median(grey)
    darker = int((grey < background - MIN_CONTRAST).sum())  # pixels that could be dark ink
    lighter = int((grey > background + MIN_CONTRAST).sum())  # or light ink
    dark_ink = background >= 0.5  # a light border: ink on paper; a dark one: chalk on a board
    if dark_ink and darker < _few(lighter):  # nothing darker than this paper: light ink on a light board
        dark_ink = False
    elif not dark_ink and lighter < _few(darker):  # nothing lighter: dark ink on dim paper
        dark_ink = True
    ink = 1.0 - grey if dark_ink else grey
    return _stretch(ink, floor=_border_median(ink))


def _few(pixels: int) -> int:
    """Under this many pixels on the border's side of the picture, against `pixels` on the other: no ink there."""
    return max(MIN_INK_PIXELS, pixels // 20)


def _spread(values: np.ndarray) -> float:
    """The range of the middle 98% of `values` (0 for none): how much contrast a region holds."""
    if values.size == 0:
        return 0.0
    low, high = np.percentile(values, [1, 99])
    return float(high - low)


def drop_specks(ink: np.ndarray) -> np.ndarray:
    """Zero connected ink blobs holding under 2% of the ink: they are dust, not strokes.

    Components are found on a coarse grid (block max-pooling) so this stays fast on big
    photos; a digit drawn in several strokes keeps every stroke, since each is far larger.
    """
    mask = ink >= INK_THRESHOLD
    if not mask.any():
        return ink
    cell = max(1, -(-max(mask.shape) // COMPONENT_GRID))
    h, w = -(-mask.shape[0] // cell), -(-mask.shape[1] // cell)
    padded = np.zeros((h * cell, w * cell), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    grid = padded.reshape(h, cell, w, cell).any(axis=(1, 3))  # (h, w)
    labels = _label(grid)  # (h, w)
    padded_ink = np.zeros((h * cell, w * cell), dtype=np.float64)
    padded_ink[: ink.shape[0], : ink.shape[1]] = ink
    cell_mass = padded_ink.reshape(h, cell, w, cell).sum(axis=(1, 3))  # (h, w)
    mass = np.bincount(labels.ravel(), weights=cell_mass.ravel())
    mass[0] = 0.0  # background
    specks = np.flatnonzero((mass > 0) & (mass < SPECK_FRACTION * mass.sum()))
    if specks.size == 0:
        return ink
    keep = ~np.isin(labels, specks)  # (h, w)
    keep = np.repeat(np.repeat(keep, cell, axis=0), cell, axis=1)[: ink.shape[0], : ink.shape[1]]
    return ink * keep


def _label(grid: np.ndarray) -> np.ndarray:
    """8-connected component labels of a small boolean grid (0 = background)."""
    labels = np.zeros(grid.shape, dtype=np.int32)
    h, w = grid.shape
    current = 0
    for start in zip(*np.nonzero(grid)):
        if labels[start]:
            continue
        current += 1
        labels[start] = current
        stack = [start]
        while stack:
            y, x = stack.pop()
            for ny in range(max(0, y - 1), min(h, y + 2)):
                for nx in range(max(0, x - 1), min(w, x + 2)):
                    if grid[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = current
                        stack.append((ny, nx))
    return labels


def ink_bbox(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the ink, exclusive end; None when blank or nearly so."""
    if ink.max() < MIN_CONTRAST:
        return None
    mask = ink >= INK_THRESHOLD
    if mask.sum() < max(MIN_INK_PIXELS, MIN_INK_FRACTION * ink.size):
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def fit_box(crop: np.ndarray, size: int = BOX_SIZE) -> np.ndarray:
    """Resize (h, w) so the longer side is `size`, aspect kept, anti-aliased; max scaled to 1."""
    h, w = crop.shape
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    tensor = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]
    resized = torch.nn.functional.interpolate(
        tensor, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False
    )[0, 0].clamp_(0.0, 1.0)  # (new_h, new_w)
    peak = float(resized.max())
    return (resized / peak).numpy() if peak > 0 else resized.numpy()


def center_of_mass_paste(box: np.ndarray, size: int = OUTPUT_SIZE) -> np.ndarray:
    """Paste (h, w) into a (size, size) black image, its centre of mass at the centre.

    Coordinates are pixel indices, so the mass lands on pixel (14, 14) as in MNIST (its
    test digits average 13.99, 14.01). The shift is rounded to whole pixels and clamped
    so nothing is cut off.
    """
    h, w = box.shape
    total = float(box.sum())
    ys, xs = np.mgrid[0:h, 0:w]
    com_y = float((ys * box).sum() / total) if total > 0 else (h - 1) / 2
    com_x = float((xs * box).sum() / total) if total > 0 else (w - 1) / 2
    top = int(np.clip(round(size // 2 - com_y), 0, size - h))
    left = int(np.clip(round(size // 2 - com_x), 0, size - w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top : top + h, left : left + w] = box
    return out


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _border_median(grey: np.ndarray) -> float:
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return float(np.median(border))


def _stretch(ink: np.ndarray, floor: float) -> np.ndarray:
    """Subtract the background level `floor` and scale the strongest ink to 1."""
    peak = float(ink.max())
    if peak - floor < MIN_CONTRAST:
        return np.zeros_like(ink, dtype=np.float32)
    return np.clip((ink - floor) / (peak - floor), 0.0, 1.0).astype(np.float32)
