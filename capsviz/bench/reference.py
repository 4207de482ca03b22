"""The benchmark's reference: the seed notebook's CapsNet, written the way the notebook wrote it.

It exists only to be timed against capsviz in the same run (`python -m capsviz.bench`);
nothing else imports it. The architecture and the loss are the paper's, like capsviz's,
but the formulation is the notebook's:

- votes: the primary capsules are stacked 10 times (one copy per digit capsule) and W is
  repeated over the batch, then one batched matmul gives u_hat;
- a hand-written softmax over the 10 parent capsules (per example, as the paper has it);
- gradients flow through every routing iteration;
- the decoder is fed the 16-D pose of the winning (longest) capsule, not the 160-D masked
  vector, so its first layer is 16 -> 512;
- data: torchvision's MNIST through a DataLoader, with RandomCrop(28, padding=2) and
  ToTensor applied per sample on the CPU.

Shape letters are those of `capsviz.routing`.
"""

from __future__ import annotations

import torch
from torch import nn

from capsviz.losses import RECONSTRUCTION_WEIGHT, margin_loss, reconstruction_loss
from capsviz.routing import squash  # Eq. 1 is the same in both; only the routing's formulation differs


def softmax_over_parents(logits: torch.Tensor) -> torch.Tensor:
    """Hand-written softmax over dim 2 (the J parents) of (B, N, J, 1)."""
    exp = torch.exp(logits - logits.max(dim=2, keepdim=True).values)
    return exp / exp.sum(dim=2, keepdim=True)


class ReferenceCapsNet(nn.Module):
    def __init__(self, routing_iters: int = 3):
        super().__init__()
        self.routing_iters = routing_iters
        self.conv1 = nn.Conv2d(1, 256, 9)
        self.primary = nn.Conv2d(256, 32 * 8, 9, stride=2)
        self.W = nn.Parameter(0.01 * torch.randn(1, 1152, 10, 16, 8))
        self.decoder = nn.Sequential(
            nn.Linear(16, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 784),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 1, 28, 28) -> lengths (B, J), reconstruction (B, 1, 28, 28)."""
        b = x.shape[0]
        h = torch.relu(self.conv1(x))  # (B, 256, 20, 20)
        u = self.primary(h).view(b, 32, 8, 6, 6).permute(0, 1, 3, 4, 2).reshape(b, 1152, 8)  # (B, N, I)
        u = squash(u)
        u = torch.stack([u] * 10, dim=2).unsqueeze(4)  # (B, N, J, I, 1): the input expanded 10 times
        w = torch.cat([self.W] * b, dim=0)  # (B, N, J, D, I): W repeated over the batch
        u_hat = torch.matmul(w, u)  # (B, N, J, D, 1)
        logits = torch.zeros(b, 1152, 10, 1, device=x.device)  # (B, N, J, 1)
        for r in range(self.routing_iters):
            c = softmax_over_parents(logits).unsqueeze(4)  # (B, N, J, 1, 1)
            v = squash((c * u_hat).sum(dim=1, keepdim=True), dim=3)  # (B, 1, J, D, 1)
            if r < self.routing_iters - 1:  # no detach: gradients through every iteration
                agreement = torch.matmul(u_hat.transpose(3, 4), torch.cat([v] * 1152, dim=1))  # (B, N, J, 1, 1)
                logits = logits + agreement.squeeze(4)
        poses = v.view(b, 10, 16)  # (B, J, D)
        lengths = poses.norm(dim=-1)  # (B, J)
        winner = poses[torch.arange(b, device=x.device), lengths.argmax(dim=1)]  # (B, D)
        return lengths, self.decoder(winner).view(b, 1, 28, 28)


def reference_loss(lengths: torch.Tensor, reconstruction: torch.Tensor, x: torch.Tensor, labels: torch.Tensor):
    return (margin_loss(lengths, labels) + RECONSTRUCTION_WEIGHT * reconstruction_loss(reconstruction, x)).mean()


def reference_loader(root, batch_size: int, *, seed: int = 0) -> torch.utils.data.DataLoader:
    """The notebook's input pipeline: PIL images, a per-sample random crop, one process."""
    from torchvision import datasets, transforms

    from capsviz.data import load_mnist

    load_mnist(root, train=True)  # the same clear error as capsviz when MNIST is missing
    transform = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.ToTensor()])
    dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)


class ReferenceTrainer:
    """Adam on the reference model; `step()` takes the next batch from the loader.

    model_only=True feeds it one fixed batch already on the device instead, to separate the
    notebook's model from its input pipeline (which can dominate on a GPU).
    """

    def __init__(self, root, *, batch_size: int, device: torch.device, seed: int = 0, model_only: bool = False):
        torch.manual_seed(seed)
        self.device = device
        self.model = ReferenceCapsNet().to(device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loader = reference_loader(root, batch_size, seed=seed)
        self.batches = iter(self.loader)
        self.fixed = tuple(t.to(device) for t in next(iter(self.loader))) if model_only else None

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fixed is not None:
            return self.fixed
        try:
            x, labels = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x, labels = next(self.batches)
        return x.to(self.device), labels.to(self.device)

    def step(self) -> torch.Tensor:
        x, labels = self._next_batch()
        lengths, reconstruction = self.model(x)
        loss = reference_loss(lengths, reconstruction, x, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()
