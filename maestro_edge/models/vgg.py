"""CIFAR-style VGG-19 with BatchNorm (Simonyan & Zisserman 2015; the CIFAR variant Maestro uses).

Sixteen 3×3 conv-BN-ReLU blocks in five stages (64, 128, 256, 512, 512 channels), a 2×2 max-pool
after each stage, global average pool, one Linear (CIFAR VGGs drop the 4096-wide classifier). The
pools round up (``ceil_mode``), so 28×28 and 8×8 inputs keep a 1×1 map after five halvings.
"""

from __future__ import annotations

from torch import nn

VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class VGG(nn.Module):
    def __init__(self, config=VGG19, in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0):
        super().__init__()
        layers, c_in = [], in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            c_out = max(1, int(item * width_mult))
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg19_bn(in_channels: int = 3, num_classes: int = 10, width_mult: float = 1.0) -> VGG:
    return VGG(VGG19, in_channels, num_classes, width_mult)
