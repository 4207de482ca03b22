"""Squash and dynamic routing (Sabour, Frosst & Hinton 2017, Procedure 1).

Dimension letters used in shape comments throughout capsviz:
    B  batch              N  child (primary) capsules, 1152 for MNIST
    J  parent capsules    D  parent capsule size, 16
    I  child capsule size, 8
    R  routing iterations
(In `paper_routing`'s einsum subscripts, i and j are the paper's: i a child capsule, one of N, j a parent.)

`paper_routing` is Procedure 1 written as the paper writes it, one einsum per line; the
router the model runs, `dynamic_routing`, computes the same values in a faster parent-major
form (tests/test_routing.py compares the two).

Routers: `ROUTERS` at the bottom names each routing algorithm; `CapsNetConfig.routing`
picks one by name. A router maps (votes (B, N, J, D), iterations, trace) to (poses (B, J, D),
RoutingTrace or None). Another algorithm is one function here and one entry in `ROUTERS`.

Gradients: only the final iteration's weighted sum carries gradient to the votes
u_hat. The agreement updates of the inner iterations use a detached copy of the votes,
so the coupling coefficients act as constants in the backward pass (as in several
faithful re-implementations; the paper leaves it open). The backward pass then skips
the inner iterations (how much time that saves is not measured on its own); the forward
values are identical either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

SQUASH_EPS = 1e-8


def squash(s: torch.Tensor, dim: int = -1, eps: float = SQUASH_EPS) -> torch.Tensor:
    """Eq. 1: v = |s|^2 / (1 + |s|^2) * s / |s|. A zero vector maps to zero, never NaN."""
    sq_norm = (s * s).sum(dim=dim, keepdim=True)
    scale = sq_norm / (1.0 + sq_norm) / torch.sqrt(sq_norm + eps)
    return scale * s


@dataclass
class RoutingTrace:
    """Per-iteration routing state, detached, on the CPU or the model's device.

    couplings: (B, R, N, J)  c_ij used in iteration r (softmax over the J parents)
    logits:    (B, R, N, J)  b_ij from which those couplings were computed
    poses:     (B, R, J, D)  parent capsules v_j at the end of iteration r
    """

    couplings: torch.Tensor
    logits: torch.Tensor
    poses: torch.Tensor

    @property
    def iterations(self) -> int:
        return self.couplings.shape[1]


def paper_routing(u_hat: torch.Tensor, r: int) -> torch.Tensor:
    """Procedure 1 in the paper's notation: votes u_hat_j|i (B, N, J, D) -> parent capsules v_j (B, J, D).

    The readable reference for `dynamic_routing`: same forward values, gradients through every iteration.
    """
    if r < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {r}")
    b = u_hat.new_zeros(u_hat.shape[:3])  # b_ij = 0 for every child i and parent j: (B, N, J)
    for _ in range(r):
        c = torch.softmax(b, dim=2)  # c_i = softmax(b_i), Eq. 3, over the parents j: (B, N, J)
        s = torch.einsum("bij,bijd->bjd", c, u_hat)  # s_j = sum_i c_ij u_hat_j|i: (B, J, D)
        v = squash(s)  # v_j = squash(s_j), Eq. 1: (B, J, D)
        b = b + torch.einsum("bijd,bjd->bij", u_hat, v)  # b_ij <- b_ij + u_hat_j|i . v_j: (B, N, J)
    return v


def dynamic_routing(
    votes: torch.Tensor, iterations: int, trace: bool = False
) -> tuple[torch.Tensor, RoutingTrace | None]:
    """Route votes u_hat (B, N, J, D) to parent capsules v (B, J, D).

    Logits start at zero for each example (never shared across the batch), and the
    coupling coefficients are a softmax over the J parents for each child.
    """
    if iterations < 1:
        raise ValueError(f"routing needs at least 1 iteration, got {iterations}")
    # One parent-major copy makes every step below a plain batched matmul over (B, J):
    # no expanded copies of the votes, and each pass reads them once, contiguously.
    votes = votes.permute(0, 2, 1, 3).contiguous()  # (B, J, N, D)
    batch, parents, children, _ = votes.shape
    logits = votes.new_zeros(batch, parents, children)  # (B, J, N)
    votes_const = votes.detach()  # inner iterations: no gradient through agreement
    recorded: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for r in range(iterations):
        last = r == iterations - 1
        couplings = torch.softmax(logits, dim=1)  # (B, J, N), sums to 1 over the J parents
        used_votes = votes if last else votes_const
        # (B, J, 1, N) @ (B, J, N, D) -> (B, J, D)
        s = torch.matmul(couplings.unsqueeze(2), used_votes).squeeze(2)
        poses = squash(s)  # (B, J, D)
        if trace:
            recorded.append((couplings.detach(), logits.detach(), poses.detach()))
        if not last:
            # (B, J, 1, D) @ (B, J, D, N) -> (B, J, N): the votes enter transposed, which BLAS reads in place
            agreement = torch.matmul(poses.detach().unsqueeze(2), votes_const.transpose(-1, -2)).squeeze(2)
            logits = logits + agreement
    if not trace:
        return poses, None
    # couplings and logits (B, R, J, N), poses (B, R, J, D)
    couplings_r, logits_r, poses_r = (torch.stack(t, dim=1) for t in zip(*recorded))
    return poses, RoutingTrace(
        couplings=couplings_r.transpose(2, 3).contiguous(),  # (B, R, N, J)
        logits=logits_r.transpose(2, 3).contiguous(),  # (B, R, N, J)
        poses=poses_r,
    )


# (votes, iterations, trace=...) -> (v, trace)
Router = Callable[..., tuple[torch.Tensor, RoutingTrace | None]]

ROUTERS: dict[str, Router] = {
    "dynamic": dynamic_routing,  # the paper's routing by agreement (Procedure 1)
}


def router(name: str) -> Router:
    if name not in ROUTERS:
        raise ValueError(f"unknown routing {name!r}; choose from {', '.join(sorted(ROUTERS))}")
    return ROUTERS[name]
