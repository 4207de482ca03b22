import io
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from capsviz.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from capsviz.preprocess import (
    center_of_mass_paste,
    drop_specks,
    fit_box,
    from_ink,
    ink_bbox,
    ink_map,
    open_image,
    to_mnist,
    to_two_digits,
)

from conftest import canvas
from drawings import LIGHTS, draw_digit, drawn_ink, photograph


def bbox_of(x: torch.Tensor, threshold: float = 0.1):
    rows = torch.nonzero(x[0].amax(dim=1) > threshold).flatten()
    cols = torch.nonzero(x[0].amax(dim=0) > threshold).flatten()
    return rows.min().item(), cols.min().item(), rows.max().item() + 1, cols.max().item() + 1


def center_of_mass(x: torch.Tensor) -> tuple[float, float]:
    img = x[0]
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    total = img.sum()
    return float((ys * img).sum() / total), float((xs * img).sum() / total)  # pixel indices


# --- each step ---------------------------------------------------------------------------


def test_ink_map_white_on_black_canvas():
    image = canvas()
    image[100:120, 50:200, :3] = 255
    ink = ink_map(image)
    assert ink.shape == (280, 280) and ink.dtype == np.float32
    assert ink[110, 100] == pytest.approx(1.0) and ink[10, 10] == 0.0


def test_ink_map_uses_alpha_on_a_transparent_canvas():
    image = canvas(transparent=True)
    image[100:120, 50:200] = (255, 255, 255, 255)  # white strokes, transparent elsewhere
    dark = canvas(transparent=True)
    dark[100:120, 50:200] = (0, 0, 0, 255)  # black strokes on transparent: still ink
    for picture in (image, dark):
        ink = ink_map(picture)
        assert ink[110, 100] == pytest.approx(1.0) and ink[10, 10] == 0.0


def test_ink_map_detects_dark_ink_on_light_paper():
    paper = np.full((200, 150, 3), 230, dtype=np.uint8)  # greyish paper, like a photo
    paper[50:150, 70:80] = 20  # dark ink
    ink = ink_map(Image.fromarray(paper))
    assert ink[100, 75] == pytest.approx(1.0)
    assert ink[10, 10] == 0.0


def test_ink_bbox_and_blank_detection():
    ink = np.zeros((100, 100), dtype=np.float32)
    assert ink_bbox(ink) is None
    ink[3, 3] = 1.0  # a speck is nearly blank
    assert ink_bbox(ink) is None
    ink[20:60, 30:40] = 0.8
    assert ink_bbox(ink) == (3, 3, 60, 40)
    assert ink_bbox(drop_specks(ink)) == (20, 30, 60, 40)


def test_drop_specks_keeps_every_real_stroke():
    ink = np.zeros((280, 280), dtype=np.float32)
    ink[50:200, 100:115] = 1.0  # a stroke
    ink[50:65, 150:230] = 1.0  # a second, separate stroke (the bar of a 5, say)
    ink[270:273, 5:8] = 1.0  # dust
    cleaned = drop_specks(ink)
    assert cleaned[270:273, 5:8].sum() == 0
    assert np.array_equal(cleaned[:260], ink[:260])


def test_a_stray_dot_does_not_shrink_the_digit():
    image = np.asarray(draw_digit(4)).copy()
    image[265:270, 5:10, :3] = 255  # an accidental dot in the corner
    assert torch.allclose(to_mnist(image), to_mnist(draw_digit(4)), atol=1e-5)


def test_fit_box_keeps_aspect_ratio_and_longer_side_20():
    tall = np.ones((200, 50), dtype=np.float32)
    assert fit_box(tall).shape == (20, 5)
    wide = np.ones((10, 40), dtype=np.float32)
    assert fit_box(wide).shape == (5, 20)
    tiny = np.ones((4, 2), dtype=np.float32)  # tiny drawings are scaled up
    assert fit_box(tiny).shape == (20, 10)
    assert fit_box(tall).max() == pytest.approx(1.0)


def test_fit_box_is_anti_aliased():
    stripes = np.zeros((200, 200), dtype=np.float32)
    stripes[:, ::2] = 1.0  # 1-px stripes average out when shrunk 10x
    out = fit_box(stripes)
    assert out.std() < 0.05


def test_center_of_mass_paste_centres_the_mass():
    box = np.zeros((20, 10), dtype=np.float32)
    box[10:16, :] = 1.0  # mass low in the box: the box must move up
    box[:, 7] = 1.0
    out = center_of_mass_paste(box)
    assert out.shape == (28, 28) and out.sum() == pytest.approx(box.sum())
    cy, cx = center_of_mass(torch.from_numpy(out)[None])
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_center_of_mass_paste_never_cuts_the_digit():
    box = np.zeros((20, 20), dtype=np.float32)
    box[0, 0] = 1.0  # all mass in a corner would push the box off the image
    out = center_of_mass_paste(box)
    assert out.sum() == pytest.approx(1.0)


# --- the whole pipeline -----------------------------------------------------------------


def test_output_is_mnist_like():
    x = to_mnist(draw_digit(3))
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() == pytest.approx(1.0)
    top, left, bottom, right = bbox_of(x, threshold=0.0)
    assert max(bottom - top, right - left) == 20  # fits the 20x20 box
    cy, cx = center_of_mass(x)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1


@pytest.mark.parametrize(
    "box,width",
    [
        ((60, 40, 220, 240), 18),  # centred, normal size
        ((0, 0, 70, 90), 8),  # off-centre, top-left corner
        ((205, 190, 279, 279), 6),  # off-centre, bottom-right corner
        ((130, 130, 146, 150), 3),  # tiny
        ((8, 8, 272, 272), 30),  # huge, strokes touching every edge
    ],
)
def test_position_and_size_do_not_matter(box, width):
    reference = to_mnist(draw_digit(5, width=18))
    x = to_mnist(draw_digit(5, box=box, width=width))
    assert x is not None
    top, left, bottom, right = bbox_of(x, threshold=0.0)
    assert max(bottom - top, right - left) == 20
    cy, cx = center_of_mass(x)
    assert abs(cy - 14) < 1 and abs(cx - 14) < 1
    # the same digit at any place and size lands in about the same pixels
    overlap = torch.nn.functional.cosine_similarity(x.flatten(), reference.flatten(), dim=0)
    assert overlap > 0.5


def test_transparent_canvas_and_photo_give_the_same_digit():
    white_on_black = to_mnist(draw_digit(2))
    transparent = to_mnist(draw_digit(2, transparent=True))
    photo = Image.fromarray(255 - np.asarray(draw_digit(2).convert("L")))  # dark on white
    scan = to_mnist(photo)
    assert torch.allclose(white_on_black, transparent, atol=1e-5)
    assert torch.allclose(white_on_black, scan, atol=1e-5)


def test_encoded_bytes_are_accepted():
    buffer = io.BytesIO()
    draw_digit(8).save(buffer, format="PNG")
    assert torch.allclose(to_mnist(buffer.getvalue()), to_mnist(draw_digit(8)), atol=1e-5)


def test_an_mnist_digit_survives_the_round_trip(mnist_root):
    """Upscale a real MNIST digit onto a big canvas, off-centre: it comes back (nearly) unchanged."""
    from capsviz.data import load_mnist

    split = load_mnist(mnist_root, train=False)
    for index in range(5):
        original = split.images[index].float() / 255
        big = Image.fromarray(split.images[index].numpy()).resize((196, 196), Image.Resampling.BICUBIC)
        page = np.zeros((300, 300), dtype=np.uint8)
        page[90:286, 20:216] = np.asarray(big)
        x = to_mnist(page)
        similarity = torch.nn.functional.cosine_similarity(x.flatten(), original.flatten(), dim=0)
        assert similarity > 0.8, (index, float(similarity))


@pytest.mark.parametrize(
    "blank",
    [
        canvas(),
        canvas(transparent=True),
        np.full((280, 280), 255, dtype=np.uint8),
        np.full((50, 60, 3), 128, dtype=np.uint8),
        np.random.default_rng(0).integers(0, 12, (280, 280), dtype=np.uint8),  # faint sensor noise
    ],
)
def test_blank_or_nearly_blank_returns_none(blank):
    assert to_mnist(blank) is None


def test_a_single_speck_is_blank():
    image = canvas()
    image[140:142, 140:142, :3] = 255
    assert to_mnist(image) is None


def test_float_arrays_and_nan_never_produce_nan():
    image = np.zeros((100, 100), dtype=np.float32)
    image[20:80, 45:55] = 1.0
    image[0, 0] = np.nan
    x = to_mnist(image)
    assert x is not None and torch.isfinite(x).all()


@pytest.mark.parametrize("garbage", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_garbage_bytes_raise_a_clear_error(garbage):
    with pytest.raises(ValueError, match="not a readable image"):
        to_mnist(garbage)


def test_wrong_array_shape_raises_a_clear_error():
    with pytest.raises(ValueError, match="image array"):
        to_mnist(np.zeros((4, 4, 4, 4)))


def test_very_heavy_ink_is_not_mistaken_for_background():
    image = canvas()
    image[40:240, 60:220, :3] = 255  # ink covers most of the canvas
    assert to_mnist(image) is not None
    assert to_mnist(draw_digit(8, width=70)) is not None


def test_photo_orientation_tag_is_honoured():
    upright = draw_digit(7).convert("L")
    sideways = upright.rotate(90, expand=True)  # stored rotated, as a phone does ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 CW to display"
    buffer = io.BytesIO()
    sideways.save(buffer, format="JPEG", exif=exif, quality=95)
    from_bytes = to_mnist(buffer.getvalue())
    from_pil = to_mnist(Image.open(io.BytesIO(buffer.getvalue())))
    expected = to_mnist(upright)
    for x in (from_bytes, from_pil):
        similarity = torch.nn.functional.cosine_similarity(x.flatten(), expected.flatten(), dim=0)
        assert similarity > 0.9


def _seven(background, ink, mode: str = "L") -> Image.Image:
    image = Image.new(mode, (300, 300), background)
    ImageDraw.Draw(image).line([(90, 80), (210, 80), (130, 230)], fill=ink, width=20)
    return image


@pytest.mark.parametrize("paper", [200, 128, 100, 60])
def test_dark_ink_on_dim_paper_is_ink_however_dim_the_paper(paper):
    """Found by a review: paper below mid-grey (an indoor photo) was taken for a dark board, the digit for blank."""
    reference = to_mnist(_seven(0, 255))  # white on black, as MNIST
    photo = io.BytesIO()
    _seven(paper, max(paper - 100, 0)).save(photo, format="JPEG", quality=90)
    x = to_mnist(photo.getvalue())
    assert x is not None and torch.abs(x - reference).mean() < 0.02


def test_light_ink_on_a_light_grey_board_is_still_light_ink():
    x = to_mnist(_seven(150, 250))  # chalk a little lighter than a light board: the chalk is the ink
    assert x is not None and torch.abs(x - to_mnist(_seven(0, 255))).mean() < 0.02


def test_a_sticker_with_transparent_corners_is_read_by_its_ink_not_its_outline():
    """Found by a review: any transparency made alpha the ink, so a clipped photo became a white blob."""
    sticker = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    ImageDraw.Draw(sticker).rounded_rectangle([20, 20, 280, 280], radius=60, fill=(255, 255, 255, 255))
    ImageDraw.Draw(sticker).line([(90, 80), (210, 80), (130, 230)], fill=(0, 0, 0, 255), width=20)
    x = to_mnist(sticker)
    assert x is not None and torch.abs(x - to_mnist(_seven(0, 255))).mean() < 0.02
    strokes = _seven((0, 0, 0, 0), (255, 0, 0, 255), mode="RGBA")  # red strokes on a transparent canvas
    assert torch.abs(to_mnist(strokes) - to_mnist(_seven(0, 255))).mean() < 0.02


def test_two_digits_keep_a_36x36_canvas_and_fit_any_other_picture_onto_one():
    composite = np.zeros((36, 36), dtype=np.uint8)
    composite[6:26, 8:14], composite[12:30, 10:28] = 255, 128  # two overlapping strokes, as a MultiMNIST pair
    x = to_two_digits(Image.fromarray(composite))
    assert x.shape == (1, 36, 36) and torch.allclose(x[0], torch.from_numpy(composite / 255.0).float(), atol=1e-6)
    drawn = Image.new("L", (200, 120))
    ImageDraw.Draw(drawn).rectangle([20, 10, 140, 100], fill=255)  # 121 x 91 px of ink
    fitted = to_two_digits(drawn)
    top, left, bottom, right = bbox_of(fitted, threshold=0.25)
    assert fitted.shape == (1, 36, 36) and max(bottom - top, right - left) == 23  # TWO_DIGIT_BOX
    assert to_two_digits(Image.new("L", (36, 36))) is None and to_two_digits(Image.new("L", (90, 90))) is None


# --- photos under uneven light ------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    model, _ = load_checkpoint(SHIPPED_CHECKPOINT)
    return model.eval()


def read(model, images: list) -> list[int]:
    """What the model reads in each picture (-1 where preprocessing found it blank)."""
    xs = [to_mnist(image) for image in images]
    batch = torch.stack([x if x is not None else torch.zeros(1, 28, 28) for x in xs])  # (B, 1, 28, 28)
    with torch.no_grad():
        digits = model(batch).lengths.argmax(dim=1).tolist()
    return [d if x is not None else -1 for d, x in zip(digits, xs)]


UNEVEN = [light for light in LIGHTS if light != "even"]


def test_a_shadow_edge_is_flattened_so_ink_reads_the_same_in_light_and_shade():
    """Paper lit 0.9 on the left half and 0.45 on the right, a stroke in each half absorbing 70% of its
    light: divided by its own paper, each stroke is 1 - 0.3 = 0.7 of ink, stretched to 1, the paper 0."""
    paper = np.full((200, 200), 0.9)
    paper[:, 100:] = 0.45
    grey = paper.copy()
    grey[40:160, 40:52] *= 0.3  # a stroke in the light
    grey[40:160, 150:162] *= 0.3  # and one in the shadow
    ink = ink_map((grey * 255).round().astype(np.uint8))  # (128, 128): flattened pictures are read at 128 px
    scale = ink.shape[0] / 200
    light_stroke, shaded_stroke = ink[int(100 * scale), int(46 * scale)], ink[int(100 * scale), int(156 * scale)]
    assert light_stroke == pytest.approx(1.0, abs=0.05) and shaded_stroke == pytest.approx(1.0, abs=0.05)
    assert ink[int(100 * scale), int(80 * scale)] < 0.05 and ink[int(100 * scale), int(125 * scale)] < 0.05


@pytest.mark.parametrize("noise", [0.0, 0.08])
def test_drawn_digits_photographed_under_uneven_light_read_as_themselves(shipped, noise):
    drawings = [draw_digit(d) for d in range(10)]
    expected = read(shipped, drawings)
    for light in LIGHTS:
        photos = [photograph(drawn_ink(d), light, noise=noise, seed=d) for d in range(10)]
        assert read(shipped, photos) == expected, light


@pytest.mark.parametrize("width", [5, 40])
def test_thin_and_heavy_pens_under_a_shadow_read_as_themselves(shipped, width):
    expected = read(shipped, [draw_digit(d, width=width) for d in range(10)])
    for light in ("shadow", "gradient"):
        photos = [photograph(drawn_ink(d, width=width), light) for d in range(10)]
        assert read(shipped, photos) == expected, light


def test_mnist_digits_photographed_in_shade_gradient_and_noise_are_read_correctly(shipped, mnist_root):
    """Real test digits, enlarged onto a page and photographed: every one the model reads right when clean
    it reads right under each light, with and without sensor noise."""
    from capsviz.data import load_mnist

    split = load_mnist(mnist_root, train=False)
    count = 20
    pages = []
    for index in range(count):
        big = Image.fromarray(split.images[index].numpy()).resize((196, 196), Image.Resampling.BICUBIC)
        page = np.zeros((300, 300))
        page[52:248, 40:236] = np.asarray(big) / 255
        pages.append(page)
    labels = split.labels[:count].tolist()
    clean = read(shipped, [(page * 255).astype(np.uint8) for page in pages])
    known = [i for i in range(count) if clean[i] == labels[i]]
    assert len(known) >= count - 1
    for light in UNEVEN:
        for noise in (0.0, 0.06):
            photos = [photograph(pages[i], light, noise=noise, seed=i) for i in known]
            got = read(shipped, photos)
            wrong = [(i, labels[i], g) for i, g in zip(known, got) if g != labels[i]]
            assert not wrong, (light, noise, wrong)


def test_a_stroke_along_the_edge_is_not_taken_for_a_shadow():
    """A canvas whose bar runs along its top edge has an uneven edge but even light: read as drawn."""
    image = draw_digit(5, box=(8, 8, 272, 272), width=30)
    assert ink_map(image).shape == (280, 280)  # the plain path: flattened pictures are read at 128 px


# --- crop and threshold (the upload's controls) --------------------------------------------------


def test_a_crop_keeps_one_digit_of_two():
    pair = np.zeros((280, 560), dtype=np.float32)
    pair[:, :280] = drawn_ink(3)
    pair[:, 280:] = drawn_ink(7)
    three, seven = from_ink(pair, crop=(0.0, 0.0, 1.0, 0.5)), from_ink(pair, crop=(0.0, 0.5, 1.0, 1.0))
    assert torch.allclose(three, to_mnist(draw_digit(3)), atol=1e-5)
    assert torch.allclose(seven, to_mnist(draw_digit(7)), atol=1e-5)


def test_a_threshold_removes_faint_blotches_and_keeps_the_digit():
    ink = drawn_ink(4).astype(np.float32)
    blotched = ink.copy()
    blotched[240:275, 5:120] = 0.3  # a faint, wide smudge under the digit
    assert not torch.allclose(from_ink(blotched), to_mnist(draw_digit(4)), atol=0.05)  # the smudge is read
    cleaned = from_ink(blotched, threshold=0.4)
    assert torch.allclose(cleaned, from_ink(ink, threshold=0.4), atol=1e-5)
    assert torch.abs(cleaned - to_mnist(draw_digit(4))).mean() < 0.02


@pytest.mark.parametrize(
    "settings",
    [{"crop": (0.5, 0.0, 0.4, 1.0)}, {"crop": (0.0, -0.1, 1.0, 1.0)}, {"threshold": 1.0}, {"threshold": -0.1}],
)
def test_a_crop_or_threshold_out_of_range_is_refused_clearly(settings):
    with pytest.raises(ValueError, match="crop|threshold"):
        from_ink(drawn_ink(1), **settings)


@pytest.mark.parametrize("mode, value", [("L", 255), ("L", 0), ("L", 128), ("RGB", (0, 0, 0)), ("LA", (0, 255))])
def test_a_one_pixel_picture_is_read_as_blank_not_an_internal_error(mode, value):
    assert to_mnist(Image.new(mode, (1, 1), value)) is None  # no edge to judge the light by: nothing to read


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_path_that_is_not_a_regular_file_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer
    for path in (tmp_path / "pipe.png", "/dev/zero", tmp_path / "missing.png"):
        with pytest.raises(ValueError, match="not a readable image"):
            open_image(path)
