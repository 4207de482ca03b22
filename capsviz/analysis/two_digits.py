"""Two overlapping digits through a two-digit model (Sabour et al. 2017, section 6): the two digits it names,
each one reconstructed from its own capsule (the paper's Figure 5), and where routing sends each primary
capsule's vote, iteration by iteration.

    x = centred(drawing)                          # (1, 36, 36): a 28x28 input on the MultiMNIST canvas
    reading = read(capsnet, x, routing_iters=3)   # .named: the two longest capsules, longest first
    seen = separate(capsnet, x, reading.named, 3) # .reconstructions (2, 36, 36), .share (R, 2, G, G)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from capsviz import registry
from capsviz.data import to_float
from capsviz.multimnist import CANVAS, MAX_SHIFT

FIT = 26  # px: two overlapping digits drawn on a canvas fill about this much of the 36x36 canvas, as in training


def from_two_colours(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A two-pen drawing (H, W, 3 or 4) uint8, the first digit in red and the second in blue on black, ->
    (x (1, 36, 36), singles (2, 36, 36)) in [0, 1]: both fitted together (their box's longer side FIT px,
    centred) so they keep their overlap. None until both colours hold ink."""
    inks = to_float(torch.from_numpy(np.ascontiguousarray(rgb[..., [0, 2]])).permute(2, 0, 1))[:, 0]  # (2, H, W)
    if (inks.flatten(1).amax(dim=1) < 0.5).any():
        return None
    union = inks.amax(dim=0)  # (H, W)
    rows, cols = torch.nonzero(union > 0.1, as_tuple=True)
    box = inks[:, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]  # (2, h, w)
    scale = FIT / max(box.shape[1:])
    size = [max(1, round(n * scale)) for n in box.shape[1:]]
    small = F.interpolate(box[None], size=size, mode="area")[0]  # (2, h', w'), the longer side FIT
    singles = torch.zeros(2, CANVAS, CANVAS)
    top, left = ((CANVAS - n) // 2 for n in size)
    singles[:, top : top + size[0], left : left + size[1]] = small
    return singles.sum(dim=0, keepdim=True).clamp(max=1.0), singles


def centred(x: torch.Tensor) -> torch.Tensor:
    """(1, 28, 28) -> (1, 36, 36): a single-digit input at the centre of the two-digit canvas (shift 0 of 4)."""
    return F.pad(x, (MAX_SHIFT,) * 4)


@dataclass(frozen=True)
class TwoReading:
    scores: np.ndarray  # (J,) capsule lengths (CapsNet) or sigmoid probabilities (CNN)
    named: tuple[int, int]  # the two highest, highest first


def read(model: torch.nn.Module, x: torch.Tensor, routing_iters: int | None = None) -> TwoReading:
    """x (1, 36, 36) in [0, 1] -> the two digits the model names."""
    options = {"routing_iters": routing_iters} if registry.has_routing(model) else {}
    device = next(model.parameters()).device
    with registry.evaluating(model), torch.no_grad():
        scores = model.scores(x[None].to(device), **options)[0].float().cpu()  # (J,)
    first, second = scores.topk(2).indices.tolist()
    return TwoReading(scores.numpy(), (first, second))


@dataclass(frozen=True)
class Separation:
    reconstructions: np.ndarray  # (K, 36, 36): each digit given decoded from its own masked capsule
    share: np.ndarray  # (R, 2, G, G): coupling each position sends to the two digits, mean over capsule types

    def swapped(self) -> Separation:
        """The same, its two digits in the other order (an extra reconstruction stays last)."""
        order = [1, 0, *range(2, len(self.reconstructions))]
        return Separation(self.reconstructions[order], self.share[:, ::-1])


def separate(capsnet: torch.nn.Module, x: torch.Tensor, digits: tuple[int, ...], iterations: int) -> Separation:
    """What `iterations` of routing do with input x (1, 36, 36) for two of its digit capsules; a third digit,
    when given, is only reconstructed (the paper's "digit that is not there")."""
    device = next(capsnet.parameters()).device
    with registry.evaluating(capsnet), torch.no_grad():
        poses, trace, _ = capsnet.encode(x[None].to(device), iterations, trace=True)  # (1, J, D)
        each = capsnet.reconstruct(poses, torch.tensor([digits], device=device))  # (1, 2, 1, 36, 36)
    c = trace.couplings[0][:, :, list(digits[:2])].float().cpu()  # (R, N, 2)
    types = capsnet.config.primary_types
    grid = int(round((c.shape[1] // types) ** 0.5))
    share = c.view(iterations, types, grid, grid, 2).mean(dim=1).permute(0, 3, 1, 2)  # (R, 2, G, G)
    return Separation(each[0, :, 0].float().cpu().numpy(), share.numpy())


DOMINANCE = 2.0  # a position belongs to a digit whose ink in its field is at least twice the other's


def owners(singles: torch.Tensor, config) -> np.ndarray:
    """singles (..., 2, 36, 36), each digit's own image -> (..., G, G): 0 or 1, the digit whose ink dominates each
    primary capsule's receptive field (conv1's kernel, then PrimaryCaps' kernel at its stride), -1 where neither
    does."""
    field = 2 * config.kernel_size - 1  # two stacked k x k convolutions
    size = singles.shape[-1]
    ink = F.avg_pool2d(singles.reshape(-1, 2, size, size).float(), field, config.primary_stride)  # (B, 2, G, G)
    a, b = ink[:, 0], ink[:, 1]
    owner = torch.full(a.shape, -1)
    owner[(a > 0) & (a >= DOMINANCE * b)] = 0
    owner[(b > 0) & (b >= DOMINANCE * a)] = 1
    return owner.reshape(*singles.shape[:-3], *owner.shape[-2:]).numpy()


def owned_share(share: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """share (R, 2, G, G), owner (G, G) -> (R, 2, 2): [r, k, j] the mean coupling that positions owned by digit k
    send to digit j in iteration r (NaN when digit k owns no position)."""
    out = np.full((share.shape[0], 2, 2), np.nan)
    for k in (0, 1):
        if (owner == k).any():
            out[:, k, :] = share[:, :, owner == k].mean(axis=-1)  # (R, 2)
    return out


def raised(share: np.ndarray, owner: np.ndarray, k: int) -> tuple[float, float] | None:
    """Of the positions digit k owns: the share whose coupling to k rose from the first iteration to the last,
    and the mean change of that coupling (a fraction of the whole); None when k owns no position."""
    mine = owner == k  # (G, G)
    if not mine.any():
        return None
    change = share[-1, k][mine] - share[0, k][mine]  # (M,)
    return float((change > 0).mean()), float(change.mean())


def inks_swapped(reconstructions: np.ndarray, singles: np.ndarray) -> bool:
    """Whether the two reconstructions (2, H, W) overlap the two inks (2, H, W) better swapped than in order."""
    in_order = float((reconstructions * singles).sum())
    swapped = float((reconstructions * singles[::-1]).sum())
    return swapped > in_order
