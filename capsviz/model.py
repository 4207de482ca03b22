"""The paper's MNIST CapsNet: Conv1 -> PrimaryCaps -> DigitCaps (dynamic routing) -> Decoder.

    from capsviz.model import CapsNet, CapsNetConfig
    model = CapsNet(CapsNetConfig())            # 8,215,568 parameters, as in the paper
    out = model(x, trace=True)                  # x: (B, 1, 28, 28) in [0, 1]
    loss, lengths = model.objective(x, labels)  # what the trainer calls: the model owns its loss

Shape letters are those of `capsviz.routing`: B batch, N = 1152 primary capsules,
J = 10 digit capsules, D = 16 pose dimensions, I = 8 primary capsule size.

The convolutions are plain nn.Conv2d; the training fast path (`capsviz.speed.fastpath`) swaps in
faster CPU training layers with the same parameters and state dict keys (`capsviz.speed.conv`).

Primary capsules are flattened type-major: capsule n = type * 36 + row * 6 + col, so
`n` reshapes to (32 types, 6, 6) positions; the app relies on this layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from capsviz import tasks
from capsviz.configs import CAPSNET_BOUNDS, MAX_DECODER_HIDDEN, check_bounds, config_from_dict
from capsviz.losses import capsule_loss
from capsviz.routing import ROUTERS, RoutingTrace, router, squash


@dataclass(frozen=True)
class CapsNetConfig:
    """Everything needed to rebuild a CapsNet; stored inside every checkpoint."""

    num_classes: int = 10
    input_size: int = 28
    in_channels: int = 1
    conv_channels: int = 256
    kernel_size: int = 9
    primary_types: int = 32
    primary_dim: int = 8
    primary_stride: int = 2
    digit_dim: int = 16
    routing_iters: int = 3
    decoder_hidden: tuple[int, int] = (512, 1024)
    routing: str = "dynamic"  # a name in capsviz.routing.ROUTERS
    task: str = tasks.DEFAULT  # a name in capsviz.tasks.TASKS: what it was trained to read

    def __post_init__(self) -> None:
        tasks.check(self.task)
        if self.routing not in ROUTERS:
            raise ValueError(f"routing must be one of {', '.join(sorted(ROUTERS))}, got {self.routing!r}")
        check_bounds(self, CAPSNET_BOUNDS)  # capsviz.configs: before anything is sized from the fields
        hidden = self.decoder_hidden
        if not (
            isinstance(hidden, tuple)
            and len(hidden) == 2
            and all(type(h) is int and 1 <= h <= MAX_DECODER_HIDDEN for h in hidden)
        ):
            raise ValueError(f"decoder_hidden must be two integers in 1..{MAX_DECODER_HIDDEN}, got {hidden!r}")
        if self.primary_grid < 1:
            raise ValueError(
                f"input_size {self.input_size} is too small for two {self.kernel_size}x{self.kernel_size} convs"
            )

    @property
    def primary_grid(self) -> int:
        conv1 = self.input_size - self.kernel_size + 1
        return (conv1 - self.kernel_size) // self.primary_stride + 1

    @property
    def num_primary(self) -> int:
        return self.primary_types * self.primary_grid**2

    @property
    def receptive_field(self) -> int:
        """Input pixels one primary capsule sees along each axis: conv1's window grown by PrimaryCaps'."""
        return 2 * self.kernel_size - 1

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for a model card."""
        task = "" if self.task == tasks.DEFAULT else f", trained on {self.task} ({self.input_size}x{self.input_size})"
        return (
            f"CapsNet (Sabour, Frosst & Hinton 2017), MNIST architecture{task}, {self.routing_iters} routing iterations"
        )

    @classmethod
    def from_dict(cls, data: dict) -> CapsNetConfig:
        return config_from_dict(cls, data)


PAPER = CapsNetConfig()  # the paper's MNIST CapsNet: the geometry the explorer's views draw (10 x 16-D, 6x6 grid)


@dataclass
class CapsNetOutput:
    lengths: torch.Tensor  # (B, J) capsule lengths, the class probabilities
    poses: torch.Tensor  # (B, J, D) DigitCaps vectors
    reconstruction: torch.Tensor  # (B, 1, H, W) decoder output from the masked capsule; (B, K, 1, H, W) for K digits
    trace: RoutingTrace | None = None
    primary: torch.Tensor | None = None  # (B, N, I) primary capsules, detached, only with trace=True


class PrimaryCaps(nn.Module):
    """A 9x9 stride-2 convolution read as `types` channels of `dim`-D capsules, squashed."""

    def __init__(self, *, in_channels: int, types: int, dim: int, kernel_size: int, stride: int):
        super().__init__()
        self.types, self.dim = types, dim
        self.conv = nn.Conv2d(in_channels, types * dim, kernel_size, stride=stride)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.conv(features)  # (B, types*I, G, G)
        b, _, g, _ = out.shape
        out = out.view(b, self.types, self.dim, g, g)  # (B, types, I, G, G)
        out = out.permute(0, 1, 3, 4, 2).reshape(b, self.types * g * g, self.dim)  # (B, N, I)
        return squash(out.float())  # float32 from here on, even under bf16 autocast


class DigitCaps(nn.Module):
    """Votes u_hat = W_ij u_i for every child/parent pair, then routing (`capsviz.routing.ROUTERS`)."""

    def __init__(self, *, children: int, parents: int, in_dim: int, out_dim: int, routing: str = "dynamic"):
        super().__init__()
        self.route = router(routing)
        # W: (N, J, D, I), initialised small as in common re-implementations
        self.weight = nn.Parameter(0.01 * torch.randn(children, parents, out_dim, in_dim))

    def votes(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, N, I) -> u_hat: (B, N, J, D), one batched matmul per child capsule."""
        n, j, d, i = self.weight.shape
        w = self.weight.reshape(n, j * d, i).transpose(1, 2)  # (N, I, J*D)
        u_hat = torch.bmm(u.transpose(0, 1), w)  # (N, B, J*D)
        return u_hat.view(n, -1, j, d).transpose(0, 1)  # (B, N, J, D)

    def forward(
        self, u: torch.Tensor, iterations: int, trace: bool = False
    ) -> tuple[torch.Tensor, RoutingTrace | None]:
        with torch.autocast(u.device.type, enabled=False):  # routing stays float32 (capsviz.speed.fastpath)
            return self.route(self.votes(u.float()), iterations, trace=trace)


class Decoder(nn.Module):
    """FC 512 ReLU -> FC 1024 ReLU -> FC 784 sigmoid, fed with the masked (J*D) capsules."""

    def __init__(self, *, in_features: int, hidden: tuple[int, int], out_pixels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden[0]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(inplace=True),
            nn.Linear(hidden[1], out_pixels),
            nn.Sigmoid(),
        )

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        return self.net(masked)


class CapsNet(nn.Module):
    def __init__(self, config: CapsNetConfig | None = None):
        super().__init__()
        self.config = config = config or CapsNetConfig()
        self.conv1 = nn.Conv2d(config.in_channels, config.conv_channels, config.kernel_size)
        self.primary = PrimaryCaps(
            in_channels=config.conv_channels,
            types=config.primary_types,
            dim=config.primary_dim,
            kernel_size=config.kernel_size,
            stride=config.primary_stride,
        )
        self.digits = DigitCaps(
            children=config.num_primary,
            parents=config.num_classes,
            in_dim=config.primary_dim,
            out_dim=config.digit_dim,
            routing=config.routing,
        )
        self.decoder = Decoder(
            in_features=config.num_classes * config.digit_dim,
            hidden=config.decoder_hidden,
            out_pixels=config.in_channels * config.input_size**2,
        )

    def encode(
        self, x: torch.Tensor, routing_iters: int | None = None, trace: bool = False
    ) -> tuple[torch.Tensor, RoutingTrace | None, torch.Tensor]:
        """x: (B, C, H, W) -> DigitCaps poses (B, J, D), the optional trace, primary capsules (B, N, I)."""
        features = torch.relu(self.conv1(x))  # (B, 256, S-8, S-8): 20x20 for MNIST, 28x28 for MultiMNIST
        primary = self.primary(features)  # (B, N, I)
        iterations = self.config.routing_iters if routing_iters is None else routing_iters
        poses, routing_trace = self.digits(primary, iterations, trace=trace)
        return poses, routing_trace, primary

    def reconstruct(self, poses: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Decode (B, J, D) poses keeping only `classes` (B,) -> (B, C, H, W); classes (B, K) decode each
        digit from its own masked capsule -> (B, K, C, H, W)."""
        if classes.dim() == 2:
            b, k = classes.shape
            each = self.reconstruct(poses.repeat_interleave(k, dim=0), classes.reshape(-1))  # (B*K, C, H, W)
            return each.view(b, k, *each.shape[1:])  # (B, K, C, H, W)
        mask = nn.functional.one_hot(classes, self.config.num_classes).to(poses.dtype)  # (B, J)
        masked = (poses * mask.unsqueeze(-1)).flatten(1)  # (B, J*D)
        c, s = self.config.in_channels, self.config.input_size
        return self.decoder(masked).view(-1, c, s, s)  # (B, C*S*S) -> (B, C, S, S)

    def decode(self, poses: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """One pose per example, (B, D), read as the capsule of `classes` (B,) -> (B, C, H, W).

        This is what the pose sliders call: the other J - 1 capsules are masked to zero.
        """
        b, d = poses.shape
        full = poses.new_zeros(b, self.config.num_classes, d)  # (B, J, D)
        full[torch.arange(b, device=poses.device), classes] = poses
        return self.reconstruct(full, classes)

    def forward(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        routing_iters: int | None = None,
        trace: bool = False,
    ) -> CapsNetOutput:
        """Mask the decoder by `labels` (B,) or (B, K) when given (training), else by the longest capsule
        (the K longest for a task of K digits an image)."""
        poses, routing_trace, primary = self.encode(x, routing_iters, trace=trace)
        lengths = poses.norm(dim=-1)  # (B, J)
        classes = labels if labels is not None else tasks.predict(lengths, tasks.digits_of(self.config))
        reconstruction = self.reconstruct(poses, classes)
        return CapsNetOutput(lengths, poses, reconstruction, routing_trace, primary.detach() if trace else None)

    def objective(
        self, x: torch.Tensor, targets: torch.Tensor, singles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss (margin + down-weighted reconstruction, decoder masked by `targets`) and the
        class scores: x (B, C, H, W), targets (B,) -> (loss (), lengths (B, J)).

        Two-digit images: targets (B, K) mark every digit present, and each digit is reconstructed from its
        own capsule against its own image, singles (B, K, C, H, W); the K reconstruction losses are summed.
        """
        out = self(x, labels=targets)
        return capsule_loss(out, x if singles is None else singles, targets), out.lengths

    def scores(self, x: torch.Tensor, routing_iters: int | None = None) -> torch.Tensor:
        """Class scores without the decoder: x (B, C, H, W) -> capsule lengths (B, J)."""
        poses, _, _ = self.encode(x, routing_iters)
        return poses.norm(dim=-1)  # (B, J)
