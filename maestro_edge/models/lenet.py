"""LeNet-5 (LeCun et al. 1998) for 28×28 inputs: the MNIST model of the Maestro paper.

conv 5×5 (6, padding 2) → ReLU → max-pool → conv 5×5 (16) → ReLU → max-pool → 120 → 84 → classes.
An adaptive average pool to 5×5 before the classifier lets 32×32 inputs through as well (at 28×28
it is the identity). ReLU and max-pool instead of the original tanh and subsampling, as is usual.
"""

from __future__ import annotations

from torch import nn


class LeNet5(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(5),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
