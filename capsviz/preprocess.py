"""Turn a drawing, photo or scan into the 28x28 image an MNIST model expects.

MNIST digits were size-normalised to fit a 20x20 box (aspect ratio kept, anti-aliased)
and centred by centre of mass in a 28x28 image, white ink on black. `to_mnist` applies
the same steps to any input, each a small function below:

    ink_map        alpha-aware greyscale + polarity: ink is 1, background 0; a photo whose
                   edge is unevenly lit or noisy is flattened first (`flattened_ink`)
    from_ink       the rest, with an optional crop and ink threshold (the upload's controls):
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
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageOps

from capsviz.files import not_regular
from capsviz.multimnist import CANVAS

OUTPUT_SIZE = 28
MAX_THRESHOLD = 0.9  # the strongest ink threshold a user may set (1 would erase everything)
BOX_SIZE = 20
MAX_INPUT_SIDE = 1024  # larger photos are shrunk first; MNIST needs 20 px
MAX_INPUT_PIXELS = 4096 * 4096  # refused before decoding (64 MB as RGBA); JPEGs are decoded at a reduced scale
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16/32-bit greyscale: scaled, never clipped at 255
INK_THRESHOLD = 0.25  # fraction of the ink contrast that counts as ink for the bounding box
MIN_CONTRAST = 0.15  # weaker than this between ink and background: blank
MIN_INK_PIXELS = 12  # fewer ink pixels than this (at input resolution): blank
MIN_INK_FRACTION = 1e-4
Crop = tuple[float, float, float, float]  # (top, left, bottom, right) as shares of the height and width
FULL: Crop = (0.0, 0.0, 1.0, 1.0)
SPECK_FRACTION = 0.02  # connected ink blobs under 2% of all ink are specks
COMPONENT_GRID = 96  # specks are found on a grid of at most this many cells a side
TWO_DIGIT_BOX = 23  # median longer side of the ink box (ink >= INK_THRESHOLD) of the MultiMNIST test composites
UNEVEN_LIGHT = 0.12  # the paper's brightness along the picture's edge varies more than this: flatten it first
NOISY_EDGE = 0.03  # neighbouring edge pixels differ by more than this (median): sensor noise, flatten and smooth
LIGHT_SEGMENTS = 16  # the edge is judged by the medians of this many runs along it
LIGHT_WINDOW = 0.25  # the flattening window, as a share of the picture's longer side: wider than a stroke
POLARITY_CELLS = 32  # the polarity is judged on a grid this many cells a side
POLARITY_MARGIN = 0.05  # brightness beyond the local median by more than this stands out
FLAT_SIDE = 128  # px: a picture under uneven light is flattened and read at most this large


def to_mnist(
    image: Image.Image | np.ndarray | bytes, *, crop: Crop | None = None, threshold: float = 0.0
) -> torch.Tensor | None:
    """Any drawing / upload -> (1, 28, 28) float tensor in [0, 1], or None when blank.

    crop and threshold: see `from_ink`. Raises ValueError for input that is not an image at all.
    """
    return from_ink(ink_map(image), crop=crop, threshold=threshold)


def from_ink(ink: np.ndarray, *, crop: Crop | None = None, threshold: float = 0.0) -> torch.Tensor | None:
    """An `ink_map` (H, W) -> (1, 28, 28), or None when blank: the steps after the ink is found.

    crop keeps a part of the picture, (top, left, bottom, right) as shares of its height and width;
    threshold (0 to MAX_THRESHOLD) turns ink fainter than that share of the strongest into background
    and stretches the rest back to 0..1, for a photo whose paper is blotchy.
    """
    ink = _thresholded(_cropped(ink, crop or FULL), threshold)
    return _fit(drop_specks(ink), BOX_SIZE, OUTPUT_SIZE)


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
    fitted = fit_box(ink[top:bottom, left:right], box_size)  # (h, w), max(h, w) == box_size
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


def _cropped(ink: np.ndarray, crop: Crop) -> np.ndarray:
    """The part of (H, W) inside `crop`, at least one pixel a side; ValueError for a crop that is not a box."""
    top, left, bottom, right = (float(v) for v in crop)
    if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
        raise ValueError(
            f"a crop is (top, left, bottom, right), each side between 0 and 1 and top < bottom, left < right: {crop}"
        )
    h, w = ink.shape
    rows = slice(min(int(top * h), h - 1), max(round(bottom * h), int(top * h) + 1))
    cols = slice(min(int(left * w), w - 1), max(round(right * w), int(left * w) + 1))
    return ink[rows, cols]


def _thresholded(ink: np.ndarray, threshold: float) -> np.ndarray:
    """Ink at or below `threshold` becomes background; the rest is stretched back to 0..1."""
    if not 0.0 <= threshold <= MAX_THRESHOLD:
        raise ValueError(f"threshold must be between 0 and {MAX_THRESHOLD}, got {threshold}")
    if threshold == 0.0:
        return ink
    return np.clip((ink - threshold) / (1.0 - threshold), 0.0, 1.0).astype(np.float32)


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
    problem = None if isinstance(source, bytes) else not_regular(source)  # a FIFO blocks open(), /dev/zero never ends
    if problem is not None:
        raise ValueError(f"not a readable image: {problem}")
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
    if _edge_spread(grey) > UNEVEN_LIGHT or _edge_noise(grey) > NOISY_EDGE:
        flat = flattened_ink(grey)
        if flat is not None:
            return flat
    return _plain_ink(grey)


def _plain_ink(grey: np.ndarray) -> np.ndarray:
    """(H, W) evenly lit greyscale -> ink, with the border median as the background (see `ink_map`)."""
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


def _edge(grey: np.ndarray) -> np.ndarray:
    """(H, W) -> the pixels along the picture's edge, clockwise from the top left (none for a 1x1 picture)."""
    return np.concatenate([grey[0, :-1], grey[:-1, -1], grey[-1, :0:-1], grey[:0:-1, 0]])


def _edge_runs(grey: np.ndarray) -> list[float]:
    """The medians of LIGHT_SEGMENTS runs along the picture's edge, clockwise: a stroke crossing it barely counts."""
    return [float(np.median(run)) for run in np.array_split(_edge(grey), LIGHT_SEGMENTS) if run.size]


def _edge_spread(grey: np.ndarray) -> float:
    """How much the background's brightness changes along the picture's edge (0 where it has no edge)."""
    runs = _edge_runs(grey)
    return max(runs) - min(runs) if runs else 0.0


def _edge_noise(grey: np.ndarray) -> float:
    """The median difference between neighbouring edge pixels: sensor noise, 0 on a drawing."""
    ring = _edge(grey)
    return float(np.median(np.abs(np.diff(ring)))) if ring.size > 1 else 0.0


def flattened_ink(grey: np.ndarray) -> np.ndarray | None:
    """(H, W) greyscale whose edge is unevenly lit or noisy -> (h, w) ink in [0, 1], at most FLAT_SIDE a side;
    None when the unevenness was ink touching the edge, not light (the plain path then reads it).

    The background's own brightness is estimated at every pixel by a grey closing (a max filter,
    then a min filter, LIGHT_WINDOW of the picture wide): it erases dark strokes narrower than the
    window and keeps shadow edges where they are. Dark ink is the picture divided by that paper, so
    a stroke in shadow is as dark as one in the light; light ink (chalk) is the picture minus the
    board, estimated by the opposite, an opening.
    """
    small = _smoothed(_shrunk(grey, FLAT_SIDE))  # (h, w): sensor noise averaged out
    window = max(3, round(LIGHT_WINDOW * max(small.shape)) | 1)  # odd
    sign = 1.0 if _dark_ink(small) else -1.0  # an opening is a closing of the negative
    inside = sign * _closing(sign * small, window, extend=False)  # (h, w): strokes along the edge erased too
    if _edge_spread(inside) <= UNEVEN_LIGHT and _edge_noise(grey) <= NOISY_EDGE:
        return None
    background = sign * _closing(sign * small, window)  # (h, w)
    if sign > 0:
        ink = 1.0 - np.clip(small / np.maximum(background, 1e-3), 0.0, 1.0)
    else:
        ink = np.clip(small - background, 0.0, 1.0)
    return _stretch(ink, floor=_border_median(ink))


def _dark_ink(small: np.ndarray) -> bool:
    """Whether the ink is darker than its paper, under uneven light: ink is what stands out from the local
    median over half the picture (mostly background), and the side that stands out more is the ink's."""
    step = -(-max(small.shape) // POLARITY_CELLS)
    h, w = -(-small.shape[0] // step), -(-small.shape[1] // step)
    padded = np.pad(small, ((0, h * step - small.shape[0]), (0, w * step - small.shape[1])), mode="edge")
    coarse = padded.reshape(h, step, w, step).mean(axis=(1, 3))  # (h, w), at most 32 a side
    k = POLARITY_CELLS // 2 + 1  # odd: half the picture
    windows = sliding_window_view(np.pad(coarse, k // 2, mode="edge"), (k, k))  # (h, w, k, k)
    residual = coarse - np.median(windows, axis=(2, 3))  # (h, w)
    darker = np.maximum(-residual - POLARITY_MARGIN, 0.0).sum()
    return bool(darker >= np.maximum(residual - POLARITY_MARGIN, 0.0).sum())


def _shrunk(grey: np.ndarray, side: int) -> np.ndarray:
    """(H, W) -> at most `side` pixels a side, area-averaged."""
    if max(grey.shape) <= side:
        return grey.astype(np.float32)
    pil = Image.fromarray(grey.astype(np.float32))  # mode "F"
    pil.thumbnail((side, side), Image.Resampling.BOX)
    return np.array(pil, dtype=np.float32)


def _smoothed(grey: np.ndarray) -> np.ndarray:
    """A 3x3 box blur of (h, w), edges replicated: the closing's max filter would pick noise peaks."""
    h, w = grey.shape
    padded = np.pad(grey.astype(np.float32), 1, mode="edge")  # (h + 2, w + 2)
    return sum(padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9.0  # (h, w)


def _closing(grey: np.ndarray, window: int, *, extend: bool = True) -> np.ndarray:
    """Grey-level closing of (h, w) with a square window: a max filter then a min filter, each separable.

    extend: the picture is first extended by its edge pixels, so a shadow edge that meets the border
    stays straight; without it, windows see only the picture, and a stroke along the edge is erased.
    """
    pad = window // 2
    x = np.pad(grey, pad, mode="edge") if extend else grey  # (h + 2p, w + 2p) or (h, w)
    closed = -_max_filter(-_max_filter(x, window), window)
    return closed[pad:-pad, pad:-pad] if extend else closed  # (h, w)


def _max_filter(x: np.ndarray, window: int) -> np.ndarray:
    """A separable square max filter of (h, w); windows that reach past the edge see only the picture."""
    padded = np.pad(x, window // 2, constant_values=-np.inf)  # (h + 2p, w + 2p)
    rows = sliding_window_view(padded, window, axis=1).max(axis=-1)  # (h + 2p, w)
    return sliding_window_view(rows, window, axis=0).max(axis=-1)  # (h, w)


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
