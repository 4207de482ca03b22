import io

import numpy as np
import pytest
import torch
from PIL import Image

from capsviz.analysis.perturb import (
    PAPER_RANGE,
    PAPER_STEP,
    decode_pose,
    dimension_effects,
    grid_to_png,
    grid_values,
    perturb,
    perturbation_grid,
)
from capsviz.model import CapsNet

from conftest import TINY_CAPSNET


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CapsNet(TINY_CAPSNET).eval()


@pytest.fixture
def pose():
    torch.manual_seed(1)
    return 0.3 * torch.randn(16)


def test_grid_values_are_the_papers():
    values = grid_values()
    assert values.shape == (11,)
    assert values[5] == 0.0
    assert values[0] == -PAPER_RANGE and values[-1] == PAPER_RANGE
    np.testing.assert_allclose(np.diff(values), PAPER_STEP)


def test_perturb_returns_a_new_tensor_and_leaves_the_input(pose):
    before = pose.clone()
    deltas = np.linspace(-0.1, 0.1, 16)
    out = perturb(pose, deltas)
    assert out is not pose and out.data_ptr() != pose.data_ptr()
    assert torch.equal(pose, before)
    torch.testing.assert_close(out, before + torch.as_tensor(deltas, dtype=torch.float32))
    out += 1.0  # writing to the result must not reach the input either
    assert torch.equal(pose, before)


@pytest.mark.parametrize("d", [0, 7, 15])
def test_a_delta_on_one_dimension_changes_only_that_dimension(pose, d):
    deltas = [0.0] * 16
    deltas[d] = 0.25
    changed = (perturb(pose, deltas) != pose).nonzero().flatten().tolist()
    assert changed == [d]


def test_perturb_accepts_tensors_and_rejects_wrong_lengths(pose):
    torch.testing.assert_close(perturb(pose, torch.full((16,), 0.05)), pose + 0.05)
    with pytest.raises(ValueError):
        perturb(pose, [0.1] * 15)


def test_decode_pose_is_a_float32_image_in_unit_range(model, pose):
    image = decode_pose(model, pose, digit=3)
    assert isinstance(image, np.ndarray)
    assert image.shape == (28, 28) and image.dtype == np.float32
    masked = torch.zeros(1, 10 * 16)
    masked[0, 3 * 16 : 4 * 16] = pose  # capsule 3 holds the pose, the other nine are zero
    with torch.no_grad():
        expected = model.decoder(masked).view(28, 28).numpy()
    np.testing.assert_allclose(image, expected, atol=1e-6)  # the decoder's sigmoid output: in [0, 1]


def test_perturbation_grid_centre_column_is_the_unperturbed_decode(model, pose):
    grid = perturbation_grid(model, pose, digit=4)
    assert grid.shape == (16, 11, 28, 28) and grid.dtype == np.float32
    expected = decode_pose(model, pose, digit=4)
    for d in range(16):
        np.testing.assert_allclose(grid[d, 5], expected, atol=1e-6)


def test_perturbation_grid_rows_differ_and_match_single_decodes(model, pose):
    values = grid_values()
    grid = perturbation_grid(model, pose, digit=2, values=values)
    # Every row moves a different dimension, so rows differ somewhere off the centre column.
    for a in range(16):
        for b in range(a + 1, 16):
            assert not np.allclose(grid[a], grid[b]), (a, b)
    # Cell (d, k) is exactly the decode of the pose with dimension d shifted by values[k].
    for d, k in [(0, 0), (9, 10), (15, 3)]:
        deltas = np.zeros(16)
        deltas[d] = values[k]
        np.testing.assert_allclose(grid[d, k], decode_pose(model, perturb(pose, deltas), 2), atol=1e-6)


def test_perturbation_grid_uses_one_batched_decode(model, pose, monkeypatch):
    calls = []
    original = model.decode

    def counting(poses, classes):
        calls.append(poses.shape)
        return original(poses, classes)

    monkeypatch.setattr(model, "decode", counting)
    perturbation_grid(model, pose, digit=0, values=[-0.1, 0.0, 0.1])
    assert calls == [torch.Size([48, 16])]


@pytest.mark.parametrize(("scale", "gap"), [(2, 2), (1, 0), (3, 1)])
def test_grid_to_png_has_the_expected_size(scale, gap):
    grid = np.random.default_rng(0).random((16, 11, 28, 28), dtype=np.float32)
    png = grid_to_png(grid, scale=scale, gap=gap)
    assert isinstance(png, bytes)
    image = Image.open(io.BytesIO(png))
    assert image.size == (11 * 28 * scale + 10 * gap, 16 * 28 * scale + 15 * gap)  # (width, height)


def test_grid_to_png_places_tiles_and_grey_gaps():
    grid = np.zeros((2, 3, 28, 28), dtype=np.float32)
    grid[1, 2] = 1.0  # bottom-right tile all white
    pixels = np.asarray(Image.open(io.BytesIO(grid_to_png(grid, scale=2, gap=2))))
    assert pixels.shape == (2 * 56 + 2, 3 * 56 + 2 * 2)
    assert (pixels[:56, :56] == 0).all()  # top-left tile black
    assert (pixels[58:, 116:] == 255).all()  # bottom-right tile white
    gap_row, gap_col = pixels[56:58, :], pixels[:, 56:58]
    assert (gap_row == gap_row.flat[0]).all() and 0 < gap_row.flat[0] < 255
    assert (gap_col == gap_row.flat[0]).all()


def test_labelled_grid_keeps_the_tiles_and_adds_labels():
    from capsviz.analysis.perturb import grid_to_png, grid_values, labelled_grid_png

    grid = np.random.default_rng(0).random((16, 11, 28, 28)).astype(np.float32)
    plain = np.asarray(Image.open(io.BytesIO(grid_to_png(grid))))
    labelled = np.asarray(Image.open(io.BytesIO(labelled_grid_png(grid, grid_values(), digit=3))))
    found = [
        (top, left)
        for top in range(0, labelled.shape[0] - plain.shape[0] + 1)
        for left in range(0, labelled.shape[1] - plain.shape[1] + 1)
        if np.array_equal(labelled[top : top + 4, left : left + 4], plain[:4, :4])
        and np.array_equal(labelled[top : top + plain.shape[0], left : left + plain.shape[1]], plain)
    ]
    assert len(found) == 1  # the tiles are there, unchanged
    top, left = found[0]
    assert (labelled[:top] < 128).sum() > 100  # column values and title above
    assert (labelled[top:, :left] < 128).sum() > 100  # "dim d" to the left


def test_dimension_effects_speak_in_grey_levels_shares_of_the_input_and_pixels():
    """Hand-computed: the input has 32 units of ink; each dimension's ends are the first and last columns."""
    grid = np.zeros((4, 3, 28, 28), dtype=np.float32)
    grid[:, 1, 10:18, 10:18] = 0.5  # the unperturbed middle column, never compared
    grid[0, 0, 2:6, 2:6] = 1.0  # dim 0: a 4x4 block (16 ink) ...
    grid[0, 2, 2:6, 10:14] = 1.0  # ... moves 8 px right: 32 pixels change by 255
    grid[1, 0, 20:26, 20:26] = 1.0  # dim 1: 36 ink at -0.25, none at +0.25
    grid[3, 0, 2:6, 2:6] = 1.0  # dim 3: the block moves 10 px down and 10 right, and halves
    grid[3, 2, 12:16, 12:16] = 0.5
    labels = dimension_effects(grid, input_ink=32.0)
    assert labels[0] == f"{32 * 255 / 784:.0f} grey levels · ink 50% → 50% · moves 8.0 px right"
    assert labels[1] == f"{36 * 255 / 784:.0f} grey levels · ink 112% → 0%"  # no ink at one end: no centre
    assert labels[2] == "no change"
    assert labels[3] == f"{(16 + 8) * 255 / 784:.0f} grey levels · ink 50% → 25% · moves 10.0 px down, 10.0 px right"


def test_dimension_effects_never_show_a_loss_of_more_than_all_the_ink():
    """A share of the input's ink at each end is never negative, however faint the unperturbed decode."""
    rng = np.random.default_rng(0)
    grid = rng.random((16, 3, 28, 28)).astype(np.float32)
    grid[:, 1] = 0.01  # a faint middle column made the old ratio (change / middle ink) run past -100%
    for label in dimension_effects(grid, input_ink=100.0):
        assert "-" not in label and "−" not in label
