"""capsviz.analysis.table_export: the CSV downloads hold the numbers they document, checked against hand-made cases."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from capsviz.analysis import table_export
from capsviz.analysis.lab import Transform
from capsviz.analysis.xray import RoutingXray


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def small_ray() -> RoutingXray:
    """2 iterations, 2 capsule types on a 2x2 grid (N = 8), J = 3 digits, D = 2, I = 2."""
    votes = np.zeros((8, 3, 2), dtype=np.float32)
    votes[7, 2] = (1.0, 2.0)
    poses = np.array(
        [
            [[0.1, 0.0], [0.0, 0.2], [0.3, 0.4]],  # after iteration 1: lengths 0.1, 0.2, 0.5
            [[0.0, 0.6], [0.3, 0.4], [0.1, 0.0]],  # after iteration 2: lengths 0.6, 0.5, 0.1
        ],
        dtype=np.float32,
    )
    couplings = np.full((2, 8, 3), 1 / 3, dtype=np.float32)
    couplings[1, 7] = (0.2, 0.3, 0.5)
    logits = np.zeros((2, 8, 3), dtype=np.float32)
    logits[1, 7] = (-1.0, 0.0, 1.5)
    primary = np.zeros((8, 2), dtype=np.float32)
    primary[7] = (0.6, 0.8)  # length 1
    return RoutingXray(np.zeros((28, 28), np.float32), primary, votes, couplings, logits, poses, grid=2)


def test_capsules_csv_has_one_row_per_digit_with_the_last_iterations_length_and_pose(small_ray):
    table = rows(table_export.capsules_csv(small_ray))
    assert [row["digit"] for row in table] == ["0", "1", "2"]
    assert [float(row["length"]) for row in table] == pytest.approx([0.6, 0.5, 0.1])
    assert [row["predicted"] for row in table] == ["1", "0", "0"]  # the longest capsule, digit 0
    assert {row["routing_iterations"] for row in table} == {"2"}
    assert (float(table[1]["pose_0"]), float(table[1]["pose_1"])) == pytest.approx((0.3, 0.4))


def test_routing_csv_has_every_iteration_capsule_and_digit_with_its_position(small_ray):
    table = rows(table_export.routing_csv(small_ray))
    assert len(table) == 2 * 8 * 3
    row = table[-1]  # iteration 2, capsule 7 (type 1, row 1, col 1 on the 2x2 grid), digit 2
    assert (row["iteration"], row["capsule"], row["type"], row["row"], row["col"], row["digit"]) == (
        "2", "7", "1", "1", "1", "2",
    )  # fmt: skip
    assert float(row["primary_length"]) == pytest.approx(1.0)
    assert (float(row["logit"]), float(row["coupling"])) == pytest.approx((1.5, 0.5))
    assert float(row["agreement"]) == pytest.approx(1.0 * 0.1 + 2.0 * 0.0)  # votes[7, 2] . poses[1, 2]
    first = table[0 * 3 + 2]  # iteration 1, capsule 0, digit 2
    assert float(first["coupling"]) == pytest.approx(1 / 3) and float(first["logit"]) == 0.0
    assert table[3 * 5]["capsule"] == "5" and table[3 * 5]["type"] == "1" and table[3 * 5]["col"] == "1"


def test_sweep_csv_lists_each_points_settings_and_both_models_per_digit():
    points = [Transform(rotation=-10.0, shear=0.2), Transform(rotation=10.0, shear=0.2)]
    capsnet = np.array([[0.9, 0.1], [0.4, 0.7]], dtype=np.float32)  # (N, J)
    poses = np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 10  # (N, J, D)
    cnn = np.array([[0.8, 0.2], [0.3, 0.7]], dtype=np.float32)
    table = rows(table_export.sweep_csv(points, capsnet, poses, cnn, swept="rotation", routing_iters=3))
    assert len(table) == 4
    row = table[3]  # point 1, digit 1
    assert (row["point"], row["swept"], row["digit"], row["routing_iterations"]) == ("1", "rotation", "1", "3")
    assert (float(row["rotation"]), float(row["shear"]), float(row["scale_x"])) == (10.0, 0.2, 1.0)
    assert (float(row["capsnet_length"]), float(row["cnn_probability"])) == pytest.approx((0.7, 0.7))
    assert (float(row["pose_0"]), float(row["pose_1"])) == pytest.approx((0.6, 0.7))
    without = rows(table_export.sweep_csv(points, capsnet, poses, None, swept="rotation", routing_iters=3))
    assert {row["cnn_probability"] for row in without} == {""}  # not measured: empty, never 0


def test_sweep_csv_refuses_mismatched_sizes_and_unknown_transforms():
    points = [Transform()]
    with pytest.raises(ValueError, match="sizes differ"):
        table_export.sweep_csv(points, np.zeros((2, 3)), np.zeros((2, 3, 2)), None, swept="shear", routing_iters=1)
    with pytest.raises(ValueError, match="unknown transform"):
        table_export.sweep_csv(points, np.zeros((1, 3)), np.zeros((1, 3, 2)), None, swept="zoom", routing_iters=1)


def test_headers_are_the_documented_columns(small_ray):
    assert table_export.header(table_export.CAPSULE_COLUMNS, 2) == [
        "digit", "length", "predicted", "routing_iterations", "pose_0", "pose_1",
    ]  # fmt: skip
    assert table_export.routing_csv(small_ray).splitlines()[0].split(",") == list(table_export.ROUTING_COLUMNS)
    assert set(table_export.TRANSFORM_NAMES) == {f.name for f in Transform.__dataclass_fields__.values()}


def test_docs_list_every_column_as_the_code_documents_it():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "app.md").read_text()
    for columns in (table_export.CAPSULE_COLUMNS, table_export.ROUTING_COLUMNS, table_export.SWEEP_COLUMNS):
        for name, meaning in columns.items():
            escaped = meaning.replace("|", "\\|")  # a Markdown table cell escapes |
            assert f"| `{name}` | {escaped} |" in doc, name
