"""A conventional CNN baseline for the capsule claims: same data, same 2-px shift, same trainer.

    python -m capsviz train --model cnn --epochs 10 --out runs/cnn             # the small baseline
    python -m capsviz train --model cnn --preset paper --device cuda --out runs/cnn-paper

`CNNConfig()` (the default, sized for a 2-core CPU) has about as many parameters as CapsNet
without its decoder (6,804,224):

    conv 5x5,  1 -> 32, pad 2, ReLU, max-pool 2    (B, 32, 14, 14)         832
    conv 5x5, 32 -> 64, pad 2, ReLU, max-pool 2    (B, 64, 7, 7)        51,264
    FC 3136 -> 2048, ReLU, dropout 0.5             (B, 2048)         6,424,576
    FC 2048 -> 10, softmax                         (B, 10)              20,490
                                                              total  6,497,162

Narrow convolutions and a wide FC layer: most parameters sit where they cost the CPU least.

`CNNConfig.PRESETS["paper"]` is the paper's baseline (Sabour et al. 2017, section 5): three 5x5
conv layers of 256, 256 and 128 channels with stride 1 (no pooling), FC 328 and 192, dropout,
a 10-class softmax with cross entropy: 35,445,522 parameters, the paper's "35.4M" (for a GPU).
tests/test_cnn.py checks both counts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from capsviz import tasks
from capsviz.configs import INPUT_BOUNDS, check_bounds, config_from_dict

WIDTH_BOUNDS = {"conv_channels": (6, 1024), "hidden": (4, 8192)}  # (most layers, widest layer)


@dataclass(frozen=True)
class CNNConfig:
    """Everything needed to rebuild a CNN; stored inside every checkpoint."""

    num_classes: int = 10
    input_size: int = 28
    in_channels: int = 1
    conv_channels: tuple[int, ...] = (32, 64)
    kernel_size: int = 5  # odd: "same" padding keeps the size, pooling halves it
    pool: bool = True  # 2x2 max-pool after each convolution
    hidden: tuple[int, ...] = (2048,)
    dropout: float = 0.5  # before the last layer
    task: str = tasks.DEFAULT  # a name in capsviz.tasks.TASKS; two digits: sigmoid outputs, not a softmax

    PRESETS: ClassVar[dict[str, CNNConfig]]

    def __post_init__(self) -> None:
        tasks.check(self.task)
        check_bounds(self, INPUT_BOUNDS)  # capsviz.configs: a checkpoint cannot make capsviz allocate without limit
        for name, (layers, width) in WIDTH_BOUNDS.items():
            value = getattr(self, name)
            if not (isinstance(value, tuple) and len(value) <= layers and all(type(w) is int for w in value)):
                raise ValueError(f"{name} must be at most {layers} integer widths, got {value!r}")
            if any(not 1 <= w <= width for w in value):
                raise ValueError(f"every width in {name} must be in 1..{width}, got {value!r}")
        if type(self.pool) is not bool or type(self.dropout) not in (int, float):
            raise ValueError(f"pool must be true or false and dropout a number, got {self.pool!r}, {self.dropout!r}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if not self.conv_channels or min(self.conv_channels) < 1 or (self.hidden and min(self.hidden) < 1):
            raise ValueError("conv_channels needs at least one layer, and every width must be positive")
        if self.feature_size < 1:
            raise ValueError(f"input_size {self.input_size} is too small for {len(self.conv_channels)} poolings")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def feature_size(self) -> int:
        """Side of the last convolution's output."""
        return self.input_size // 2 ** len(self.conv_channels) if self.pool else self.input_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CNNConfig:
        return config_from_dict(cls, data)

    def describe(self) -> str:
        """One line for a model card."""
        convs = ", ".join(map(str, self.conv_channels))
        fcs = ", ".join(map(str, self.hidden)) or "none"
        pooling = "2x2 max-pool after each" if self.pool else "no pooling"
        task = "" if self.task == tasks.DEFAULT else f", trained on {self.task} ({self.input_size}x{self.input_size})"
        kernel = f"{self.kernel_size}x{self.kernel_size}"
        return f"CNN baseline: {kernel} convs of {convs} channels ({pooling}), FC {fcs}{task}"


CNNConfig.PRESETS = {
    "small": CNNConfig(),
    "paper": CNNConfig(conv_channels=(256, 256, 128), pool=False, hidden=(328, 192)),
}


class CNN(nn.Module):
    """Convolutions (ReLU, optional pooling), fully connected layers, dropout, class logits."""

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        self.config = config = config or CNNConfig()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for width in config.conv_channels:
            layers += [nn.Conv2d(channels, width, config.kernel_size, padding=config.kernel_size // 2), nn.ReLU()]
            if config.pool:
                layers.append(nn.MaxPool2d(2))
            channels = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = []
        width = channels * config.feature_size**2
        for hidden in config.hidden:
            head += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        head += [nn.Dropout(config.dropout), nn.Linear(width, config.num_classes)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1] -> class logits (B, classes)."""
        return self.classifier(self.features(x).flatten(1))  # (B, C' * S * S) -> (B, classes)

    def objective(
        self, x: torch.Tensor, targets: torch.Tensor, singles: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross entropy and the softmax probabilities: x (B, C, H, W), targets (B,) -> (loss (), (B, classes)).

        Two-digit images, targets (B, K): a sigmoid per class against the K digits present (binary cross
        entropy summed over the classes) and the sigmoid probabilities. `singles` (a decoder's targets) unused.
        """
        logits = self(x).float()
        if tasks.digits_of(self.config) == 1:
            return F.cross_entropy(logits, targets), logits.softmax(dim=1)
        present = tasks.multi_hot(targets, self.config.num_classes)  # (B, classes)
        loss = F.binary_cross_entropy_with_logits(logits, present, reduction="none").sum(dim=1).mean()
        return loss, logits.sigmoid()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities (B, classes), the argmax the prediction; for two digits, a sigmoid per class
        and the two highest the prediction."""
        logits = self(x).float()
        return logits.softmax(dim=1) if tasks.digits_of(self.config) == 1 else logits.sigmoid()
