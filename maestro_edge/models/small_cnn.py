"""A small VGG-style CNN: the default architecture for tiny inputs (8×8 digits, 28×28 images)."""

from __future__ import annotations

from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Conv blocks with a 2×2 max-pool after every second block, global average pool, two Linears."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(32, 64, 128, 128), hidden: int = 256):
        super().__init__()
        layers, c_in = [], in_channels
        for i, width in enumerate(widths):
            layers.append(_conv_block(c_in, width))
            if i % 2 == 1 and i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c_in, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))
