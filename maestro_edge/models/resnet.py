"""CIFAR-style ResNet-18 (He et al. 2016, as used by Maestro and Pufferfish for CIFAR-10).

A 3×3 stride-1 stem and no max-pool (ImageNet ResNets use 7×7/2 + pool, which leave nothing of a
28×28 image), four stages of two BasicBlocks (64, 128, 256, 512 channels; stride 2 from the second
stage on), 1×1-conv + BN shortcuts where the shape changes, global average pool, one Linear.
11,173,962 parameters at 3 input channels and 10 classes.

``input_size=S`` resizes every input to S×S (bilinear) as the model's first op, so a small image
runs at a larger, phone-sized resolution: the embedded default runs Fashion-MNIST's 28×28 at 96×96
(5 GMAC instead of 0.46). The parameters do not change; the compute grows with S².
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, blocks=(2, 2, 2, 2), in_channels: int = 3, num_classes: int = 10, width: int = 64,
                 input_size: int | None = None):
        super().__init__()
        if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                       or input_size < 8):
            raise ValueError(f"input_size must be an integer >= 8, got {input_size!r}")
        self.input_size = input_size
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, c_in = [], width
        for i, count in enumerate(blocks):
            c_out = width * 2 ** i
            layers = []
            for j in range(count):
                layers.append(BasicBlock(c_in, c_out, stride=2 if i > 0 and j == 0 else 1))
                c_in = c_out
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        if self.input_size is not None:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))


def resnet18(in_channels: int = 3, num_classes: int = 10, width: int = 64, input_size: int | None = None) -> ResNet:
    return ResNet((2, 2, 2, 2), in_channels, num_classes, width, input_size)
