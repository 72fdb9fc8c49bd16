"""A user's own project, written outside maestro-edge: a model, its data, its metric.

Nothing here imports maestro_edge. ``score`` and ``calibration`` are what ``maestro-edge fit --eval
mynet:score --calibrate mynet:calibration`` calls, from this folder.

TwoBranchNet mixes what real CNNs do besides plain convs: a depthwise conv (left dense by
maestro-edge: grouped convs are not factorized), a functional forward with a spatial mean, a
max-pooled second branch, concatenation and bilinear upsampling.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"   # Debian's dataset-fashion-mnist


class TwoBranchNet(nn.Module):
    def __init__(self, width: int = 32, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(width)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.down_bn = nn.BatchNorm2d(2 * width)
        self.side = nn.Conv2d(width, 2 * width, 1)
        self.mix = nn.Conv2d(4 * width, 2 * width, 3, padding=1)
        self.head = nn.Linear(4 * width, 128)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(self.depthwise(x)) + x
        deep = F.relu(self.down_bn(self.down(x)))
        deep = F.interpolate(deep, size=x.shape[-2:], mode="bilinear", align_corners=False)
        side = self.side(F.max_pool2d(x, 2)).repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
        y = F.relu(self.mix(torch.cat([deep, side[..., : x.shape[-2], : x.shape[-1]]], dim=1)))
        pooled = torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], dim=1)
        return self.classifier(F.relu(self.head(pooled)))


def _idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        dims = struct.unpack(">I", f.read(4))[0] & 0xFF
        shape = struct.unpack(">" + "I" * dims, f.read(4 * dims))
        return np.frombuffer(f.read(), dtype=np.uint8).reshape(shape)


def load(data: str = os.environ.get("MYNET_DATA", "digits")):
    """(train_x, train_y, val_x, val_y, test_x, test_y) as float tensors in [0, 1] and int64 labels."""
    if data == "fashion-mnist":
        x = np.concatenate([_idx(f"{FASHION_MNIST}/train-images-idx3-ubyte.gz"),
                            _idx(f"{FASHION_MNIST}/t10k-images-idx3-ubyte.gz")])
        y = np.concatenate([_idx(f"{FASHION_MNIST}/train-labels-idx1-ubyte.gz"),
                            _idx(f"{FASHION_MNIST}/t10k-labels-idx1-ubyte.gz")])
        x, y = torch.tensor(x, dtype=torch.float32)[:, None] / 255, torch.tensor(y, dtype=torch.long)
        return x[:55000], y[:55000], x[55000:60000], y[55000:60000], x[60000:], y[60000:]
    from sklearn.datasets import load_digits

    digits = load_digits()   # 8x8, shipped with scikit-learn
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:1500], y[1200:1500], x[1500:], y[1500:]


_HELD_OUT = {}


def _held_out():
    if not _HELD_OUT:
        _, _, vx, vy, tx, ty = load()
        _HELD_OUT.update(val_x=vx, val_y=vy, test_x=tx, test_y=ty)
    return _HELD_OUT


@torch.no_grad()
def _accuracy(model, x, y) -> float:
    model.eval()
    return sum((model(a).argmax(1) == b).sum().item() for a, b in zip(x.split(256), y.split(256))) / len(x)


def score(model) -> float:
    """Test accuracy (the user's metric: higher is better): what a fitted model is reported with."""
    data = _held_out()
    return _accuracy(model, data["test_x"], data["test_y"])


def val_score(model) -> float:
    """Validation accuracy: what chooses ranks (importance), so the test set stays out of every choice."""
    data = _held_out()
    return _accuracy(model, data["val_x"], data["val_y"])


def calibration():
    """Validation batches (inputs only) for BatchNorm recalibration of truncated models."""
    return list(_held_out()["val_x"].split(128))
