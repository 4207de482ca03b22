"""Routing as data: one input's votes, couplings and agreements, and the numbers the views show.

    ray = xray(model, x)                    # x: (1, 28, 28); every routing iteration up to 5
    ray3 = ray.upto(3)                      # exactly what a 3-iteration run computes
    summary_text(ray3, digit=3)             # the one-line measured summary a view carries

Everything here is numpy in, numpy out (only `xray` touches the model), so the app, the
command line (`python -m capsviz trace`) and the tests see the same numbers.

Shape letters are those of `capsviz.routing`: N primary capsules, J digit capsules, D digit
pose size, I primary pose size, R routing iterations, G the primary grid (6 for MNIST);
primary capsules are type-major, n = type * G*G + row * G + col.

Iteration r's state is a prefix property of the routing loop: the first r iterations of a
5-iteration run compute exactly what an r-iteration run computes, so one trace with the
most iterations serves every choice of R (`RoutingXray.upto`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviz.configs import MAX_ROUTING_ITERS
from capsviz.model import CapsNet, CapsNetConfig

TIE_TOLERANCE = 1e-6  # couplings closer than this are a tie: "no winner"


@dataclass(frozen=True)
class RoutingXray:
    """One input's routing, detached, float32 numpy."""

    image: np.ndarray  # (H, W) the model input
    primary: np.ndarray  # (N, I) primary capsules u_i (squashed)
    votes: np.ndarray  # (N, J, D) u_hat_j|i = W_ij u_i
    couplings: np.ndarray  # (R, N, J) c_ij used in iteration r
    logits: np.ndarray  # (R, N, J) b_ij from which those couplings came
    poses: np.ndarray  # (R, J, D) v_j at the end of iteration r
    grid: int  # G

    @property
    def iterations(self) -> int:
        return self.couplings.shape[0]

    @property
    def num_types(self) -> int:
        return self.primary.shape[0] // self.grid**2

    @property
    def primary_lengths(self) -> np.ndarray:
        return np.linalg.norm(self.primary, axis=-1)  # (N,)

    @property
    def vote_lengths(self) -> np.ndarray:
        return np.linalg.norm(self.votes, axis=-1)  # (N, J)

    @property
    def lengths(self) -> np.ndarray:
        return np.linalg.norm(self.poses, axis=-1)  # (R, J)

    @property
    def agreements(self) -> np.ndarray:
        """u_hat_j|i . v_j after iteration r: what iteration r adds to b_ij (R, N, J)."""
        return np.einsum("njd,rjd->rnj", self.votes, self.poses)  # (N, J, D) x (R, J, D) -> (R, N, J)

    @property
    def weighted_sums(self) -> np.ndarray:
        """s_j = sum_i c_ij u_hat_j|i of every iteration (R, J, D), before the squash."""
        return np.einsum("rnj,njd->rjd", self.couplings, self.votes)  # (R, N, J) x (N, J, D) -> (R, J, D)

    def upto(self, iterations: int) -> RoutingXray:
        """The first `iterations` iterations: what a run with that many computes."""
        if not 1 <= iterations <= self.iterations:
            raise ValueError(f"iterations must be 1..{self.iterations}, got {iterations}")
        r = iterations
        return RoutingXray(
            self.image, self.primary, self.votes, self.couplings[:r], self.logits[:r], self.poses[:r], self.grid
        )


def xray(model: CapsNet, x: torch.Tensor, iterations: int = MAX_ROUTING_ITERS) -> RoutingXray:
    """x: (1, H, W) in [0, 1] (as `capsviz.preprocess.to_mnist` gives) -> its routing, every iteration."""
    device = next(model.parameters()).device
    with torch.no_grad():
        _, trace, primary = model.encode(x.unsqueeze(0).to(device), iterations, trace=True)  # primary: (1, N, I)
        votes = model.digits.votes(primary.float())  # (1, N, J, D)

    def numpy(t: torch.Tensor) -> np.ndarray:
        return t[0].float().cpu().numpy()

    return RoutingXray(
        image=x[0].float().cpu().numpy(),
        primary=numpy(primary),
        votes=numpy(votes),
        couplings=numpy(trace.couplings),
        logits=numpy(trace.logits),
        poses=numpy(trace.poses),
        grid=model.config.primary_grid,
    )


def coupling_range(num_classes: int) -> tuple[float, float]:
    """The one colour range of every coupling view: uniform 1/J plus and minus 1/J, i.e. [0, 2/J]."""
    return 0.0, 2.0 / num_classes


# --- where a primary capsule looks ------------------------------------------------------------


def capsule_position(n: int, grid: int) -> tuple[int, int, int]:
    """Type-major capsule index -> (type, row, col)."""
    return n // grid**2, (n // grid) % grid, n % grid


def capsule_index(capsule_type: int, row: int, col: int, grid: int) -> int:
    return capsule_type * grid**2 + row * grid + col


@dataclass(frozen=True)
class Field:
    """A square of input pixels: rows top .. top+size-1, columns left .. left+size-1."""

    top: int
    left: int
    size: int

    def contains(self, row: int, col: int) -> bool:
        return self.top <= row < self.top + self.size and self.left <= col < self.left + self.size


def receptive_field(config: CapsNetConfig, row: int, col: int) -> Field:
    """The input pixels that primary position (row, col) sees: Conv1 (k, stride 1) then PrimaryCaps (k, stride s).

    A PrimaryCaps output at (row, col) reads Conv1 outputs s*row .. s*row+k-1, and each of those
    reads k input pixels from its own index on: 2k - 1 pixels from s*row (17 from 2*row for MNIST).
    """
    k, s = config.kernel_size, config.primary_stride
    return Field(top=s * row, left=s * col, size=2 * k - 1)


def field_centres(config: CapsNetConfig) -> np.ndarray:
    """(G*G, 2) input coordinates (x = column, y = row) of each grid position's field centre."""
    g = config.primary_grid
    rows, cols = np.divmod(np.arange(g * g), g)
    fields = [receptive_field(config, r, c) for r, c in zip(rows, cols)]
    return np.array([(f.left + (f.size - 1) / 2, f.top + (f.size - 1) / 2) for f in fields])


# --- ties, splits and summaries ---------------------------------------------------------------


def winner(values: np.ndarray, tolerance: float = TIE_TOLERANCE) -> int | None:
    """The index of the largest value, or None when the top two are within `tolerance` (a tie)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size < 2:
        return 0 if values.size else None
    top2 = np.partition(values, -2)[-2:]
    if top2[1] - top2[0] <= tolerance:
        return None
    return int(values.argmax())


def position_split(couplings: np.ndarray, grid: int) -> np.ndarray:
    """(N, J) couplings of one iteration -> (G*G, J): each grid position's couplings, averaged
    over the capsule types at that position. Rows still sum to 1 (a split of the position's votes)."""
    c = np.asarray(couplings, dtype=np.float64)
    n, j = c.shape
    return c.reshape(n // grid**2, grid**2, j).mean(axis=0)  # (T, G*G, J) -> (G*G, J)


def moved_fraction(couplings: np.ndarray) -> float:
    """(R, N, J) -> the mean total-variation distance between the first and last iteration's
    couplings: 0 when routing changed nothing, 1 - 1/J when every child went wholly to one parent."""
    c = np.asarray(couplings, dtype=np.float64)
    return float(0.5 * np.abs(c[-1] - c[0]).sum(axis=-1).mean())


@dataclass(frozen=True)
class RoutingSummary:
    iterations: int
    digit: int
    moved: float  # moved_fraction
    share_first: float  # mean coupling to `digit` at iteration 1 (1/J)
    share_last: float  # ... at the last iteration
    length_first: float  # |v_digit| after iteration 1
    length_last: float  # ... after the last iteration
    winner_first: int | None  # longest capsule after iteration 1 (None: tie)
    winner_last: int | None


def routing_summary(ray: RoutingXray, digit: int) -> RoutingSummary:
    lengths = ray.lengths  # (R, J)
    share = ray.couplings[:, :, digit].astype(np.float64).mean(axis=1)  # (R,)
    return RoutingSummary(
        iterations=ray.iterations,
        digit=digit,
        moved=moved_fraction(ray.couplings),
        share_first=float(share[0]),
        share_last=float(share[-1]),
        length_first=float(lengths[0, digit]),
        length_last=float(lengths[-1, digit]),
        winner_first=winner(lengths[0]),
        winner_last=winner(lengths[-1]),
    )


def summary_text(ray: RoutingXray, digit: int) -> str:
    """One line, every number measured on this input."""
    s = routing_summary(ray, digit)
    if s.iterations == 1:
        return (
            f"With 1 iteration routing does nothing: every coupling is 1/{ray.couplings.shape[-1]}. "
            f"Capsule {digit} has length {s.length_last:.3f}."
        )
    verdict = "unchanged" if s.winner_first == s.winner_last else "changed"
    return (
        f"Over {s.iterations} iterations routing moved {s.moved:.1%} of the coupling weight; "
        f"the mean coupling to digit {digit} went from {s.share_first:.1%} to {s.share_last:.1%}, "
        f"and capsule {digit}'s length from {s.length_first:.3f} to {s.length_last:.3f} "
        f"(longest capsule {verdict} from uniform couplings)."
    )


def votes_text(ray: RoutingXray, digit: int, iteration: int) -> str:
    """One line on the votes for `digit` at `iteration` (1-based): agreement and couplings."""
    r = iteration - 1
    agreement = ray.agreements[r, :, digit]  # (N,)
    c = ray.couplings[r, :, digit]  # (N,)
    n = agreement.shape[0]
    return (
        f"Iteration {iteration}: {int((agreement > 0).sum())} of {n} votes point the same way as v_{digit} "
        f"(û·v > 0); agreements range {agreement.min():.3f} to {agreement.max():.3f}; "
        f"couplings to digit {digit} range {c.min():.3f} to {c.max():.3f} (uniform {1 / ray.couplings.shape[-1]:g})."
    )


def iterations_text(lengths: np.ndarray) -> str:
    """(R, J) lengths after 1..R iterations -> one line: does the longest capsule ever change?"""
    winners = [winner(row) for row in np.asarray(lengths)]
    named = ["tie" if w is None else str(w) for w in winners]
    if len(set(named)) == 1:
        head = f"The longest capsule is {named[0]} after every count from 1 to {len(named)} iterations"
    else:
        head = "The longest capsule changes with the count: " + ", ".join(
            f"{r} → {w}" for r, w in enumerate(named, start=1)
        )
    top = np.asarray(lengths)[:, winners[-1]] if winners[-1] is not None else None
    tail = "" if top is None else f"; its length goes {' → '.join(f'{v:.3f}' for v in top)}"
    return head + tail + "."


# --- votes in a plane -------------------------------------------------------------------------


def vote_plane(votes: np.ndarray, parent: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """A fixed 2-D projection of one parent's votes: (N, D) votes, (D,) parent pose -> (2, D) basis.

    Axis 1 is the parent's direction v / |v|, so a vote's first coordinate is its agreement with
    that parent divided by |v|. Axis 2 is the direction, orthogonal to axis 1, along which the
    votes spread most (first principal component of their centred residuals). The sign of each
    axis makes its largest component positive. With |v| = 0, axis 1 is the votes' own first PC.
    """
    u = np.asarray(votes, dtype=np.float64)  # (N, D)
    v = np.asarray(parent, dtype=np.float64)  # (D,)

    def top_pc(points: np.ndarray) -> np.ndarray:
        centred = points - points.mean(axis=0)  # (N, D)
        _, vectors = np.linalg.eigh(centred.T @ centred)  # (D, D) scatter matrix: eigenvalues ascending
        return vectors[:, -1]

    def signed(axis: np.ndarray) -> np.ndarray:
        return axis if axis[np.abs(axis).argmax()] >= 0 else -axis

    norm = np.linalg.norm(v)
    first = v / norm if norm > eps else signed(top_pc(u))
    residual = u - np.outer(u @ first, first)  # (N, D) the votes with axis 1 removed
    second = top_pc(residual)
    second = second - (second @ first) * first
    second = signed(second / max(np.linalg.norm(second), eps))
    return np.stack([first, second])  # (2, D)


def project(points: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(..., D) points on a (2, D) orthonormal basis -> (..., 2); linear, so sums project to sums."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(basis, dtype=np.float64).T


def captured_fraction(votes: np.ndarray, basis: np.ndarray) -> float:
    """The share of the votes' summed squared length that the plane shows."""
    u = np.asarray(votes, dtype=np.float64)
    total = float((u * u).sum())
    return float((project(u, basis) ** 2).sum() / total) if total > 0 else 0.0


def histograms(values: np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(R, N) values -> shared bin edges (bins+1,) and counts (R, bins), one row per iteration."""
    v = np.asarray(values, dtype=np.float64)
    edges = np.histogram_bin_edges(v, bins=bins)
    counts = np.stack([np.histogram(row, bins=edges)[0] for row in v])  # (R, bins)
    return edges, counts


# --- one capsule, one parent ------------------------------------------------------------------


@dataclass(frozen=True)
class CapsuleReport:
    index: int
    capsule_type: int
    row: int
    col: int
    pose: np.ndarray  # (I,)
    length: float
    vote_lengths: np.ndarray  # (J,)
    couplings: np.ndarray  # (R, J)
    agreements: np.ndarray  # (R, J)


def capsule_report(ray: RoutingXray, n: int) -> CapsuleReport:
    if not 0 <= n < ray.primary.shape[0]:
        raise ValueError(f"primary capsule index must be 0..{ray.primary.shape[0] - 1}, got {n}")
    t, row, col = capsule_position(n, ray.grid)
    return CapsuleReport(
        index=n,
        capsule_type=t,
        row=row,
        col=col,
        pose=ray.primary[n],
        length=float(np.linalg.norm(ray.primary[n])),
        vote_lengths=ray.vote_lengths[n],
        couplings=ray.couplings[:, n, :],
        agreements=ray.agreements[:, n, :],
    )


def procedure_rows(ray: RoutingXray, n: int, digit: int) -> dict[str, np.ndarray]:
    """Procedure 1 for child n and parent `digit`, one entry per iteration r (each (R,)).

    b: b_ij at the start of r; c: softmax_j(b_i)_digit; s: |s_j|; v: |v_j| = |s|^2 / (1 + |s|^2);
    a: u_hat_j|i . v_j, added to b_ij for iteration r + 1 (not used after the last).
    """
    s = np.linalg.norm(ray.weighted_sums[:, digit], axis=-1)  # (R,)
    return {
        "b": ray.logits[:, n, digit].astype(np.float64),
        "c": ray.couplings[:, n, digit].astype(np.float64),
        "s": s,
        "v": ray.lengths[:, digit].astype(np.float64),
        "a": ray.agreements[:, n, digit].astype(np.float64),
    }
