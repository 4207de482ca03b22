"""The Claims lab's computations (capsviz.analysis.lab): transforms against hand-checked cases, shapes, sweeps,
files."""

import json

import pytest
import torch

from capsviz.analysis import affine, lab, robustness
from capsviz.checkpoint import save_checkpoint
from capsviz.cnn import CNN
from capsviz.files import sha256_of
from capsviz.model import CapsNet

from conftest import TINY_CAPSNET, TINY_CNN


def digit_like() -> torch.Tensor:
    """A (1, 28, 28) image with some structure: a bright bar and a dimmer square, off centre."""
    x = torch.zeros(1, 28, 28)
    x[0, 6:20, 10:13] = 1.0
    x[0, 18:23, 15:21] = 0.6
    return x


def test_the_identity_transform_leaves_the_input_unchanged():
    x = torch.rand(1, 28, 28)
    moved = lab.transformed(x, [lab.Transform()])
    assert moved.shape == (1, 1, 28, 28)
    assert torch.allclose(moved[0], x, atol=1e-5)


def test_thickness_of_one_pixel_is_its_3x3_block_and_erosion_takes_it_back():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 12] = 1.0
    thick = lab.thicken(x, torch.tensor([1.0]))
    block = torch.zeros(1, 1, 28, 28)
    block[0, 0, 9:12, 11:14] = 1.0
    assert torch.equal(thick, block)
    assert torch.equal(lab.thicken(block, torch.tensor([-1.0])), x)  # erosion of the 3x3 block: its centre
    half = lab.thicken(x, torch.tensor([0.5]))  # halfway: the neighbours at 0.5, the pixel itself unchanged
    assert half[0, 0, 10, 12] == 1.0 and half[0, 0, 9, 11] == 0.5 and half.sum() == pytest.approx(1 + 8 * 0.5)
    assert torch.equal(lab.thicken(x, torch.tensor([0.0])), x)


def test_a_pure_shift_moves_pixels_by_whole_pixels():
    x = digit_like()
    moved = lab.transformed(x, [lab.Transform(shift_x=3.0, shift_y=-2.0)])[0]
    expected = torch.roll(x, shifts=(-2, 3), dims=(1, 2))  # the ink is far from the edges: rolling is shifting
    assert torch.allclose(moved, expected, atol=1e-5)


def test_rotation_is_affines_rotation_about_the_centre():
    x = digit_like()
    moved = lab.transformed(x, [lab.Transform(rotation=90.0)])[0]
    assert torch.allclose(moved, torch.rot90(x, 1, dims=(1, 2)), atol=1e-5)  # counter-clockwise on screen
    tilted = lab.transformed(x, [lab.Transform(rotation=25.0)])
    assert torch.allclose(tilted, affine.warp(x[None], affine.sweep_maps("rotation", 25.0, 1)).clamp(0, 1))


def test_a_sweep_varies_one_parameter_and_keeps_the_others():
    current = lab.Transform(rotation=10.0, shear=0.1, thickness=0.5)
    points = lab.sweep(current, "scale_x")
    assert [p.scale_x for p in points] == list(lab.SWEEPS["scale_x"])
    assert all((p.rotation, p.shear, p.thickness, p.scale_y) == (10.0, 0.1, 0.5, 1.0) for p in points)
    assert set(lab.SWEEPS) == set(lab.NAMES) == set(lab.LABELS)
    for name, values in lab.SWEEPS.items():  # the default setting is on every sweep: the marker can sit on it
        assert getattr(lab.Transform(), name) in values, name


def test_reading_and_sweep_shapes(tiny_models):
    capsnet, cnn = tiny_models
    points = lab.sweep(lab.Transform(), "rotation")
    n = len(points)
    reading = lab.read(capsnet, cnn, lab.transformed(digit_like(), points), routing_iters=3)
    assert reading.images.shape == (n, 28, 28)
    assert reading.capsnet.shape == (n, 10) and reading.poses.shape == (n, 10, 16) and reading.cnn.shape == (n, 10)
    assert ((reading.capsnet >= 0) & (reading.capsnet <= 1)).all()
    assert reading.cnn.sum(1) == pytest.approx([1.0] * n, abs=1e-5)
    assert lab.reconstructions(capsnet, reading.poses, 3).shape == (n, 28, 28)
    alone = lab.read(capsnet, None, lab.transformed(digit_like(), points[:2]), routing_iters=1)
    assert alone.cnn is None


def test_a_sweep_point_is_the_single_image_computation_at_that_setting(tiny_models):
    capsnet, cnn = tiny_models
    current = lab.Transform(shear=0.2, shift_x=1.0, thickness=-0.25)
    points = lab.sweep(current, "rotation")
    along = lab.read(capsnet, cnn, lab.transformed(digit_like(), points), routing_iters=3)
    i = lab.SWEEPS["rotation"].index(-30.0)
    one = lab.read(capsnet, cnn, lab.transformed(digit_like(), [points[i]]), routing_iters=3)
    assert points[i] == lab.Transform(rotation=-30.0, shear=0.2, shift_x=1.0, thickness=-0.25)
    assert torch.allclose(torch.from_numpy(along.capsnet[i]), torch.from_numpy(one.capsnet[0]), atol=1e-5)
    assert torch.allclose(torch.from_numpy(along.cnn[i]), torch.from_numpy(one.cnn[0]), atol=1e-5)
    assert torch.allclose(torch.from_numpy(along.poses[i]), torch.from_numpy(one.poses[0]), atol=1e-5)
    other = lab.read(capsnet, cnn, lab.transformed(digit_like(), [points[0]]), routing_iters=3)  # -60 degrees
    assert torch.allclose(torch.from_numpy(along.poses[0]), torch.from_numpy(other.poses[0]), atol=1e-5)
    assert not torch.allclose(torch.from_numpy(along.images[0]), torch.from_numpy(one.images[0]), atol=0.1)
    assert not torch.allclose(torch.from_numpy(along.cnn[0]), torch.from_numpy(one.cnn[0]), atol=1e-4)


def test_the_baseline_is_the_checkpoint_whose_header_says_cnn(tmp_path, monkeypatch):
    monkeypatch.delenv(lab.BASELINE_ENV, raising=False)
    save_checkpoint(tmp_path / "a_capsnet.safetensors", CapsNet(TINY_CAPSNET))
    (tmp_path / "b_broken.safetensors").write_bytes(b"not a checkpoint")
    assert lab.baseline_checkpoint(tmp_path) is None  # no CNN: the lab shows CapsNet alone
    save_checkpoint(tmp_path / "c_cnn.safetensors", CNN(TINY_CNN))
    assert lab.baseline_checkpoint(tmp_path) == tmp_path / "c_cnn.safetensors"
    monkeypatch.setenv(lab.BASELINE_ENV, "none")
    assert lab.baseline_checkpoint(tmp_path) is None
    monkeypatch.setenv(lab.BASELINE_ENV, str(tmp_path / "elsewhere.safetensors"))
    assert lab.baseline_checkpoint(tmp_path) == tmp_path / "elsewhere.safetensors"


def report(models: list[dict]) -> dict:
    return {"format": robustness.FORMAT, "date": "2026-11-23T06:00:00+00:00", "test_images": 10000, "models": models}


def test_the_robustness_report_is_read_or_its_absence_said(tmp_path):
    missing, why = lab.load_robustness(tmp_path / "robustness.json")
    assert missing is None and why == lab.NOT_MEASURED
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert lab.load_robustness(bad)[0] is None and "could not be read" in lab.load_robustness(bad)[1]
    bad.write_text(json.dumps({"format": "something else", "models": []}))
    assert "not a capsviz-robustness report" in lab.load_robustness(bad)[1]
    good = tmp_path / "good.json"
    entries = [
        {"name": "capsnet_mnist", "checkpoint": "pretrained/capsnet_mnist.safetensors"},
        {"name": "mine", "checkpoint": str(tmp_path / "runs" / "x" / "last.safetensors")},
    ]
    good.write_text(json.dumps(report(entries)))
    result, why = lab.load_robustness(good)
    assert why is None and result["date"] == "2026-11-23T06:00:00+00:00"
    assert lab.rows_in_use(result, [tmp_path / "runs" / "x" / "last.safetensors"]) == ([entries[1]], [])
    other = tmp_path / "other.safetensors"
    assert lab.rows_in_use(result, [other]) == (entries, [other])
    assert lab.rows_in_use(result, [other, tmp_path / "runs" / "x" / "last.safetensors"]) == (
        [entries[1]],
        [other],
    )  # the unmeasured one is named
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert lab.load_robustness(deep)[0] is None and "could not be read" in lab.load_robustness(deep)[1]


def test_a_report_row_describes_only_the_weights_it_measured(tmp_path):
    weights = tmp_path / "runs" / "x" / "last.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"the weights measured")
    entry = {"name": "mine", "checkpoint": str(weights), "sha256": sha256_of(weights)}
    result = report([entry])
    assert lab.rows_in_use(result, [weights]) == ([entry], [])
    weights.write_bytes(b"weights trained further")  # same path, other weights: the row no longer describes them
    assert lab.rows_in_use(result, [weights]) == ([entry], [weights])
