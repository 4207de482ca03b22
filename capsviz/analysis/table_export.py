"""The numbers behind the app's views as CSV tables with documented columns: what its downloads write.

    capsules_csv(ray)                    # one input: one row per digit capsule (length, pose)
    routing_csv(ray)                     # one input: one row per (iteration, primary capsule, digit)
    sweep_csv(points, reading, swept="rotation", routing_iters=3)   # a Claims-lab sweep

`ray` is a `capsviz.analysis.xray.RoutingXray` cut to the routing iterations in use (`ray.upto(r)`);
`reading` a `capsviz.analysis.lab.Reading` of the sweep's images. The column lists below are the
documentation (docs/app.md repeats them); the CSVs' headers are exactly their keys. Numbers are
written with 6 significant digits; an empty cell means "not measured" (no CNN baseline).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

import numpy as np

from capsviz.analysis.xray import RoutingXray

CAPSULE_COLUMNS = {
    "digit": "the digit capsule j, 0-9",
    "length": "|v_j| after the last routing iteration: how present the model finds digit j (0-1, not a softmax)",
    "predicted": "1 for the longest capsule (the prediction), else 0",
    "routing_iterations": "how many routing iterations produced v_j",
    "pose_0 ... pose_15": "the 16 components of v_j, the capsule's pose",
}
ROUTING_COLUMNS = {
    "iteration": "routing iteration r, from 1",
    "capsule": "primary capsule i, type-major: type * 36 + row * 6 + col",
    "type": "its capsule type (0-31)",
    "row": "its row on the 6x6 grid",
    "col": "its column on the 6x6 grid",
    "primary_length": "|u_i|, the primary capsule's length",
    "digit": "the parent digit capsule j",
    "logit": "b_ij at the start of iteration r (0 at r = 1)",
    "coupling": "c_ij used in iteration r: softmax of b_i over the digits (1/10 at r = 1)",
    "agreement": "u_hat_j|i . v_j after iteration r, added to b_ij for iteration r + 1",
}
SWEEP_COLUMNS = {
    "point": "the sweep point, from 0",
    "swept": "the transform swept (one of the seven below)",
    "rotation": "degrees, counter-clockwise",
    "scale_x": "horizontal scale",
    "scale_y": "vertical scale",
    "shear": "x += shear * y",
    "shift_x": "pixels, right",
    "shift_y": "pixels, down",
    "thickness": "-1 a 3x3 erosion, +1 a 3x3 dilation, blended in between",
    "routing_iterations": "CapsNet's routing iterations",
    "digit": "the digit j this row reads",
    "capsnet_length": "CapsNet's capsule length |v_j| for the moved image",
    "cnn_probability": "the CNN baseline's softmax probability for j (empty without a CNN)",
    "pose_0 ... pose_15": "the 16 components of CapsNet's v_j for the moved image",
}
TRANSFORM_NAMES = ("rotation", "scale_x", "scale_y", "shear", "shift_x", "shift_y", "thickness")


def header(columns: dict[str, str], pose_dims: int) -> list[str]:
    """The documented columns with "pose_0 ... pose_15" spelled out for `pose_dims` dimensions."""
    names = []
    for name in columns:
        if name.startswith("pose_0"):
            names.extend(f"pose_{d}" for d in range(pose_dims))
        else:
            names.append(name)
    return names


def _number(value: float) -> str:
    return f"{float(value):.6g}"


def _csv(head: Sequence[str], rows: Iterable[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(rows)
    return buffer.getvalue()


def capsules_csv(ray: RoutingXray) -> str:
    """One row per digit capsule after the ray's last iteration (J rows)."""
    poses = ray.poses[-1]  # (J, D)
    lengths = np.linalg.norm(poses, axis=-1)  # (J,)
    predicted = int(lengths.argmax())
    rows = (
        [j, _number(lengths[j]), int(j == predicted), ray.iterations, *(_number(v) for v in poses[j])]
        for j in range(poses.shape[0])
    )
    return _csv(header(CAPSULE_COLUMNS, poses.shape[1]), rows)


def routing_csv(ray: RoutingXray) -> str:
    """One row per (iteration, primary capsule, digit): R * N * J rows, iteration-major then capsule."""
    r, n, j = ray.couplings.shape
    g = ray.grid
    it, i, d = (a.ravel() for a in np.meshgrid(np.arange(r), np.arange(n), np.arange(j), indexing="ij"))  # (R*N*J,)
    columns = (
        it + 1, i, i // (g * g), (i // g) % g, i % g, ray.primary_lengths[i], d,
        ray.logits.ravel(), ray.couplings.ravel(), ray.agreements.ravel(),
    )  # fmt: skip
    line = "%d,%d,%d,%d,%d,%.6g,%d,%.6g,%.6g,%.6g"  # one format per column, in ROUTING_COLUMNS' order
    table = zip(*(c.tolist() for c in columns), strict=True)
    return ",".join(header(ROUTING_COLUMNS, 0)) + "\n" + "".join(line % row + "\n" for row in table)


def sweep_csv(
    points: Sequence, capsnet: np.ndarray, poses: np.ndarray, cnn: np.ndarray | None, *, swept: str, routing_iters: int
) -> str:
    """A sweep: `points` are the N transforms (anything with the seven TRANSFORM_NAMES attributes),
    capsnet (N, J) lengths, poses (N, J, D), cnn (N, J) probabilities or None. One row per (point, digit)."""
    if swept not in TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {swept!r}; one of {', '.join(TRANSFORM_NAMES)}")
    n, j = capsnet.shape
    if len(points) != n or poses.shape[:2] != (n, j) or (cnn is not None and cnn.shape != (n, j)):
        raise ValueError(f"{len(points)} points, lengths {capsnet.shape}, poses {poses.shape}: sizes differ")

    def row(k: int, d: int) -> list:
        settings = [_number(getattr(points[k], name)) for name in TRANSFORM_NAMES]
        probability = "" if cnn is None else _number(cnn[k, d])
        pose = [_number(v) for v in poses[k, d]]
        return [k, swept, *settings, routing_iters, d, _number(capsnet[k, d]), probability, *pose]

    return _csv(header(SWEEP_COLUMNS, poses.shape[2]), (row(k, d) for k in range(n) for d in range(j)))
