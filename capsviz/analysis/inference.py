"""One input through the model, with everything the explorer shows about it, as numpy.

    result = infer(model, x, routing_iters=3)   # x: (1, 28, 28) from capsviz.preprocess.to_mnist

    result = from_xray(model, ray)              # the same, read from a capsviz.analysis.xray.RoutingXray

The app reads it from the input's X-ray (computed once per input) on every script run: one
decoder call, no convolution; the benchmark times both (`python -m capsviz.bench`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from capsviz.analysis.xray import RoutingXray
from capsviz.model import CapsNet

# A capsule longer than this says its digit is present: halfway between the margin loss's m- = 0.1 and m+ = 0.9.
CONFIDENT_LENGTH = 0.5


@dataclass
class Inference:
    """Everything the views need, as float32 numpy, computed once per run."""

    image: np.ndarray  # (28, 28) the model input
    lengths: np.ndarray  # (J,)
    predicted: int
    poses: torch.Tensor  # (J, D) kept as a tensor: the decoder takes it
    reconstruction: np.ndarray  # (28, 28)
    couplings: np.ndarray  # (R, N, J)
    lengths_per_iter: np.ndarray  # (R, J)
    activations: np.ndarray  # (N,) primary capsule lengths

    @property
    def sure(self) -> bool:
        """Whether the winning capsule is long enough to say its digit is there (see CONFIDENT_LENGTH)."""
        return bool(self.lengths[self.predicted] > CONFIDENT_LENGTH)


def infer(model: CapsNet, x: torch.Tensor, routing_iters: int) -> Inference:
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(x.unsqueeze(0).to(device), routing_iters=routing_iters, trace=True)
    lengths = out.lengths[0].float().cpu().numpy()
    return Inference(
        image=x[0].numpy().astype(np.float32),
        lengths=lengths,
        predicted=int(lengths.argmax()),
        poses=out.poses[0].float().cpu(),
        reconstruction=out.reconstruction[0, 0].float().cpu().numpy(),
        couplings=out.trace.couplings[0].float().cpu().numpy(),  # (R, N, J)
        lengths_per_iter=out.trace.poses[0].norm(dim=-1).float().cpu().numpy(),  # (R, J)
        activations=out.primary[0].norm(dim=-1).float().cpu().numpy(),  # (N,)
    )


def from_xray(model: CapsNet, ray: RoutingXray) -> Inference:
    """What `infer(model, x, ray.iterations)` returns, from the routing already computed: one decoder call."""
    device = next(model.parameters()).device
    poses = torch.from_numpy(ray.poses[-1])  # (J, D)
    lengths = np.linalg.norm(ray.poses[-1], axis=-1)  # (J,)
    predicted = int(lengths.argmax())
    with torch.no_grad():
        classes = torch.tensor([predicted], device=device)
        reconstruction = model.reconstruct(poses.unsqueeze(0).to(device), classes)[0, 0]  # (H, W)
    return Inference(
        image=ray.image,
        lengths=lengths,
        predicted=predicted,
        poses=poses,
        reconstruction=reconstruction.float().cpu().numpy(),
        couplings=ray.couplings,
        lengths_per_iter=ray.lengths,
        activations=ray.primary_lengths,
    )
