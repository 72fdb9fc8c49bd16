"""Offline data sets (nothing is downloaded): scikit-learn digits, Fashion-MNIST (Debian package)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maestro_edge.errors import UsageError


@dataclass(frozen=True)
class ImageData:
    """Image tensors (N × C × H × W, float32, normalised) and int64 labels, split three ways.

    train: to fit weights; val: held out, for importance tables and BatchNorm recalibration;
    test: held out, for the accuracy that maestro-edge reports.
    """

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one batch-1 input."""
        return (1, *self.train_x.shape[1:])

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]


def load_dataset(name: str, seed: int = 0) -> ImageData:
    if name == "digits":
        from maestro_edge.data.digits import load_digits_data

        return load_digits_data(seed)
    raise UsageError(f"unknown data set '{name}'; choose one of: digits")
