"""What every data set loader returns (ImageData) and shares (take): below the loaders, so they import no registry."""

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


def take(indices: torch.Tensor, limit: int | None) -> torch.Tensor:
    """The first ``limit`` of ``indices`` (all when ``limit`` is None)."""
    if limit is None:
        return indices
    if limit < 1:
        raise UsageError(f"limit must be >= 1, got {limit}")
    return indices[:limit]
