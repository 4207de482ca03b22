"""Margin loss (Eq. 4) plus the down-weighted reconstruction loss of the paper, for one digit or several."""

from __future__ import annotations

import torch

from capsviz.tasks import multi_hot

M_PLUS, M_MINUS, LAMBDA = 0.9, 0.1, 0.5
RECONSTRUCTION_WEIGHT = 0.0005


def margin_loss(lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """lengths (B, J), labels (B,) or (B, K) for K digits present -> (B,) summed over the J classes."""
    target = multi_hot(labels, lengths.shape[1], lengths.dtype)  # (B, J)
    present = target * torch.relu(M_PLUS - lengths) ** 2
    absent = LAMBDA * (1.0 - target) * torch.relu(lengths - M_MINUS) ** 2
    return (present + absent).sum(dim=1)


def reconstruction_loss(reconstruction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared pixel errors per example, over every digit's image when there are several -> (B,)."""
    if reconstruction.shape != x.shape:  # broadcasting would silently compare the wrong images
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(x.shape)} differ in shape")
    return ((reconstruction - x) ** 2).flatten(1).sum(dim=1)


def capsule_loss(out, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Total loss averaged over the batch; `out` is a CapsNetOutput, x the decoder's target images."""
    margin = margin_loss(out.lengths, labels)
    recon = reconstruction_loss(out.reconstruction.float(), x.float())
    return (margin + RECONSTRUCTION_WEIGHT * recon).mean()
