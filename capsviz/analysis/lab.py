"""What the Claims lab computes: one input moved by the user's transform, read by CapsNet and a CNN.

    from capsviz.analysis import lab
    t = lab.Transform(rotation=30.0, thickness=0.5)
    moved = lab.transformed(x, [t])                             # x (1, 28, 28) -> (1, 1, 28, 28)
    now = lab.read(capsnet, cnn, moved, routing_iters=3)        # both models' scores for it
    points = lab.sweep(t, "rotation")                           # t with rotation over SWEEPS["rotation"]
    along = lab.read(capsnet, cnn, lab.transformed(x, points), routing_iters=3)   # one pass per model

The geometry is `capsviz.analysis.affine`'s (forward 3x3 maps in pixels, bilinear resampling): the lab
builds its map as shift . (rotation . shear . scale about the frame's centre). Thickness comes
first, on the untransformed strokes: a 3x3 grey dilation (thicker, +1) or erosion (thinner, -1),
blended linearly with the input for values in between (`thicken`). No streamlit here.

Shape letters: N images (sweep points), J = 10 classes (capsules), D = 16 pose dimensions.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from capsviz import registry
from capsviz.analysis import affine, robustness
from capsviz.checkpoint import PRETRAINED_DIR, CheckpointError, read_config
from capsviz.files import read_capped, sha256_cached

BASELINE_ENV = "CAPSVIZ_BASELINE"  # a CNN checkpoint to use instead of the shipped one, or "none"
ROBUSTNESS_ENV = "CAPSVIZ_ROBUSTNESS"  # the robustness JSON to show instead of pretrained/robustness.json
ROBUSTNESS_JSON = PRETRAINED_DIR / "robustness.json"  # the shipped models' report, installed beside them
MEASURE = "`python -m capsviz robustness --out-dir DIR`, then point $CAPSVIZ_ROBUSTNESS at DIR/robustness.json"
NOT_MEASURED = "not measured yet"


@dataclass(frozen=True)
class Transform:
    """What the lab's sliders set; the default leaves the input as it is."""

    rotation: float = 0.0  # degrees, counter-clockwise on screen
    scale_x: float = 1.0
    scale_y: float = 1.0
    shear: float = 0.0  # x += shear * y
    shift_x: float = 0.0  # pixels, right
    shift_y: float = 0.0  # pixels, down
    thickness: float = 0.0  # -1 one erosion, +1 one dilation (3x3), linear in between


NAMES = tuple(f.name for f in fields(Transform))
# Each parameter's sweep: rotation, shear and scale (per axis) take affine.SWEEPS's points, shift and thickness
# as many; the sliders span the same ranges in finer steps. 9 to 13 points: one batched pass stays interactive.
SWEEPS: dict[str, tuple[float, ...]] = {
    "rotation": affine.SWEEPS["rotation"],
    "scale_x": affine.SWEEPS["scale"],
    "scale_y": affine.SWEEPS["scale"],
    "shear": affine.SWEEPS["shear"],
    "shift_x": tuple(float(v) for v in range(-8, 9, 2)),
    "shift_y": tuple(float(v) for v in range(-8, 9, 2)),
    "thickness": tuple(round(-1 + 0.25 * i, 2) for i in range(9)),
}
LABELS = {
    "rotation": "rotation (degrees)",
    "scale_x": "scale x",
    "scale_y": "scale y",
    "shear": "shear (x += shear·y)",
    "shift_x": "shift x (pixels)",
    "shift_y": "shift y (pixels)",
    "thickness": "thickness (-1 eroded, +1 dilated)",
}


def forward_maps(transforms: list[Transform]) -> torch.Tensor:
    """The forward pixel maps (N, 3, 3): shift . (rotation . shear . scale about the centre)."""

    def column(name: str) -> torch.Tensor:
        return torch.tensor([getattr(t, name) for t in transforms], dtype=torch.float64)  # (N,)

    lin = affine.linear(
        rotation=column("rotation"), scale_x=column("scale_x"), scale_y=column("scale_y"), shear=column("shear")
    )  # (N, 2, 2)
    centre = torch.full((len(transforms), 2), affine.SIZE / 2, dtype=torch.float64)  # (N, 2)
    target = centre + torch.stack([column("shift_x"), column("shift_y")], -1)  # (N, 2)
    return affine.centred(lin, centre, target)


def thicken(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """x (N, 1, H, W) in [0, 1], amount (N,) in [-1, 1] -> (N, 1, H, W): +1 is a 3x3 grey dilation
    (max over the neighbourhood), -1 a 3x3 grey erosion (min), values in between blend with x."""
    dilated = F.max_pool2d(x, 3, stride=1, padding=1)  # (N, 1, H, W)
    eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)  # (N, 1, H, W); zero padding: the frame's edge is ink-free
    a = amount.to(x.dtype).view(-1, 1, 1, 1)  # (N, 1, 1, 1)
    return x + a.clamp(min=0) * (dilated - x) + (-a).clamp(min=0) * (eroded - x)


def transformed(x: torch.Tensor, transforms: list[Transform]) -> torch.Tensor:
    """One input x (1, 28, 28) in [0, 1], moved by each transform -> (N, 1, 28, 28)."""
    n = len(transforms)
    batch = x.unsqueeze(0).expand(n, -1, -1, -1)  # (N, 1, 28, 28)
    amount = torch.tensor([t.thickness for t in transforms])  # (N,)
    return affine.warp(thicken(batch, amount), forward_maps(transforms)).clamp(0, 1)


def sweep(current: Transform, name: str) -> list[Transform]:
    """The current transform with `name` set to each value of SWEEPS[name]: the rest stays as set."""
    return [replace(current, **{name: value}) for value in SWEEPS[name]]


@dataclass
class Reading:
    """Both models on N images, as float32 numpy."""

    images: np.ndarray  # (N, 28, 28) what the models saw
    capsnet: np.ndarray  # (N, J) capsule lengths, 0..1
    poses: np.ndarray  # (N, J, D) digit capsule poses
    cnn: np.ndarray | None  # (N, J) softmax probabilities, 0..1; None without a CNN

    def part(self, rows: slice) -> Reading:
        """Some of the N images' readings: one batched pass can serve the current setting and a sweep."""
        cnn = None if self.cnn is None else self.cnn[rows]
        return Reading(self.images[rows], self.capsnet[rows], self.poses[rows], cnn)


@torch.no_grad()
def read(capsnet: nn.Module, cnn: nn.Module | None, x: torch.Tensor, *, routing_iters: int) -> Reading:
    """x (N, 1, 28, 28) -> both models' scores: one forward pass per model, no decoder."""
    device = next(capsnet.parameters()).device
    poses, _, _ = capsnet.encode(x.to(device), routing_iters)  # (N, J, D)
    scores = None
    if cnn is not None:
        scores = cnn.scores(x.to(next(cnn.parameters()).device)).float().cpu().numpy()  # (N, J)
    return Reading(
        images=x[:, 0].float().cpu().numpy(),
        capsnet=poses.norm(dim=-1).float().cpu().numpy(),
        poses=poses.float().cpu().numpy(),
        cnn=scores,
    )


@torch.no_grad()
def reconstructions(capsnet: nn.Module, poses: np.ndarray, digit: int) -> np.ndarray:
    """(N, J, D) poses decoded as `digit` (the other capsules masked) -> (N, 28, 28)."""
    device = next(capsnet.parameters()).device
    poses_t = torch.from_numpy(poses).to(device)  # (N, J, D)
    classes = torch.full((poses.shape[0],), digit, dtype=torch.long, device=device)  # (N,)
    return capsnet.reconstruct(poses_t, classes)[:, 0].float().cpu().numpy()  # (N, 28, 28)


def baseline_checkpoint(folder: Path = PRETRAINED_DIR) -> Path | None:
    """The CNN baseline to compare with: $CAPSVIZ_BASELINE ("none": no baseline), else the first
    checkpoint in `folder` whose header records the kind "cnn" on MNIST (read from the header, no weights)."""
    chosen = os.environ.get(BASELINE_ENV)
    if chosen:
        return None if chosen.lower() == "none" else Path(chosen)
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            config = read_config(path)
            if registry.kind_of(config) == "cnn" and config.task == "mnist":
                return path
        except (CheckpointError, OSError, registry.UnknownKindError):
            continue  # an unreadable file is not the baseline; the sidebar reports the CapsNet's own problems
    return None


def robustness_path() -> Path:
    return Path(os.environ.get(ROBUSTNESS_ENV) or ROBUSTNESS_JSON)


MAX_ROBUSTNESS_BYTES = 4 * 1024 * 1024  # a report is a few kB; a bigger file is not one
MAX_MODELS = 64  # a report measures the shipped models and the few given with --checkpoint
MAX_READOUTS = 8  # routing counts a model is read at: 1, 3, 5 and its trained count
MAX_TEXT = 4096  # characters of a report's string (a path, a command)
_TOP = ("date", "hardware", "command", "test_images", "seed")
_READOUT = ("mnist", "affine", "affine_correct")
_PARSED: dict[str, tuple[dict | None, str | None]] = {}  # sha256 of a report's bytes -> load_robustness's answer


def load_robustness(path: Path) -> tuple[dict | None, str | None]:
    """The last `python -m capsviz robustness` report, checked once, or (None, why not): NOT_MEASURED, or why the
    file could not be read (naming the file and quoting it: not Markdown).

    Each field the lab shows is kept only when it is of its type and range (else it shows as "?"), and a report
    of more than MAX_MODELS models or MAX_READOUTS readouts a model is refused. What a file makes is cached by its
    bytes: a rerun reads and hashes it, never checks it again."""
    if not path.exists():
        return None, NOT_MEASURED
    try:
        data = read_capped(path, MAX_ROBUSTNESS_BYTES)
    except (OSError, ValueError) as exc:
        return None, f"{path.name} could not be read ({exc})"
    digest = hashlib.sha256(data).hexdigest()
    if digest not in _PARSED:
        if len(_PARSED) >= 8:
            _PARSED.clear()
        _PARSED[digest] = _checked(data)
    result, why = _PARSED[digest]
    return (result, None) if result is not None else (None, f"{path.name} could not be read ({why})")


def _checked(data: bytes) -> tuple[dict | None, str | None]:
    try:
        result = json.loads(data)
        if not isinstance(result, dict) or result.get("format") != robustness.FORMAT:
            raise ValueError(f"it is not a {robustness.FORMAT} report")
        models = result.get("models")
        if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
            raise ValueError("it has no list of models")
        if len(models) > MAX_MODELS:
            raise ValueError(f"it lists {len(models):,} models; a report holds at most {MAX_MODELS}")
        kept = {key: result[key] for key in _TOP if key in result and _FIELDS[key](result[key])}
        return {"format": robustness.FORMAT, **kept, "models": [_entry(m) for m in models]}, None
    except (ValueError, RecursionError) as exc:
        return None, str(exc)


def _entry(model: dict) -> dict:
    """One model's fields the lab reads, those of their type and range; a sha256 that is not a string matches none."""
    entry = {key: value for key, value in model.items() if key in _MODEL and _FIELDS[key](value)}
    if model.get("sha256") is not None and "sha256" not in entry:
        entry["sha256"] = ""
    readouts = model.get("by_routing")
    if isinstance(readouts, dict):
        if len(readouts) > MAX_READOUTS:
            raise ValueError(f"{len(readouts):,} routing readouts for one model; at most {MAX_READOUTS}")
        entry["by_routing"] = {
            routing: {key: v for key, v in values.items() if key in _READOUT and _FIELDS[key](v)}
            for routing, values in readouts.items()
            if isinstance(values, dict)
        }
    return entry


def _fraction(value) -> bool:
    return type(value) in (int, float) and 0 <= value <= 1  # compared exactly: no NaN, infinity or 10^400


def _text(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT and "\0" not in value


def _count(value) -> bool:
    return type(value) is int and 0 <= value <= 10**12


_FIELDS = {  # each field the lab reads, with what it must be: the report's own, then a model's
    "date": _text,
    "hardware": _text,
    "command": _text,
    "test_images": _count,
    "seed": _count,
    "name": _text,
    "kind": _text,
    "checkpoint": _text,
    "sha256": _text,
    "params": _count,
    "routing_iters": lambda v: v is None or (type(v) is int and 1 <= v <= 1000),
    "mnist": _fraction,
    "affine": _fraction,
    "affine_correct": lambda v: isinstance(v, str) and len(v) <= MAX_ROBUSTNESS_BYTES,
}
_MODEL = ("name", "kind", "checkpoint", "sha256", "params", "routing_iters", *_READOUT)


def rows_in_use(result: dict, checkpoints: list[Path]) -> tuple[list[dict], list[Path]]:
    """The report's entries for the checkpoints in use (every entry when none matches), and the checkpoints in use
    it did not measure. A shipped checkpoint matches by its name under pretrained/ (the report may have run
    elsewhere), any other by its path; an entry that names the sha256 of its weights matches only those weights."""

    def same(entry: dict, path: Path) -> bool:
        if not _text(entry.get("checkpoint")):
            return False
        where = Path(entry["checkpoint"])
        if path.parent.resolve() == PRETRAINED_DIR.resolve() and where.parent.name == PRETRAINED_DIR.name:
            named = where.name == path.name
        else:
            named = where.resolve() == path.resolve()
        return named and (entry.get("sha256") is None or entry["sha256"] == sha256_cached(path))

    chosen = [m for m in result["models"] if any(same(m, p) for p in checkpoints)]
    missing = [p for p in checkpoints if not any(same(m, p) for m in result["models"])]
    return (chosen or result["models"]), missing


def affine_gaps(entries: list[dict], test_images) -> tuple[dict | None, list[dict]]:
    """The measured size of the paper's claim on the affNIST-like set, image by image (`robustness.comparisons`):
    the first CapsNet at its trained routing against the first CNN (None when the report cannot say), and what other
    routing counts change against the trained one."""
    rows = robustness.comparisons(entries, test_images)
    against_cnn = next((row for row in rows if row["against"] == "cnn"), None)
    return against_cnn, [row for row in rows if row["against"] == "routing"]
