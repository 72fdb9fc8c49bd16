"""Offline data sets (nothing is downloaded): scikit-learn digits, Fashion-MNIST (Debian package).

``load_dataset(name, seed, limit=None)``:

- ``digits``: scikit-learn's 1,797 8×8 digits (bundled in the wheel), split 60/20/20 by the seed;
- ``fashion-mnist``: the Debian package's 60k/10k 28×28 images; 5,000 validation images are carved
  out of TRAIN by the seed, test stays the official 10k;
- ``fashion-mnist-heldout``: the small subset shipped in ``maestro_edge/assets/`` (validation and
  test images only; empty train split), for ``fit`` on machines without the package.

``limit`` keeps at most that many samples in each split (a seeded random subset), for fast runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from maestro_edge.errors import DataError, UsageError

DATASETS = ("digits", "fashion-mnist", "fashion-mnist-heldout")


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


def load_dataset(name: str, seed: int = 0, limit: int | None = None) -> ImageData:
    if name == "digits":
        from maestro_edge.data.digits import load_digits_data

        return load_digits_data(seed, limit)
    if name == "fashion-mnist":
        from maestro_edge.data.fashion_mnist import load_fashion_mnist

        return load_fashion_mnist(seed, limit)
    if name == "fashion-mnist-heldout":
        from maestro_edge.data.fashion_mnist import load_heldout

        return load_heldout(seed, limit)
    raise UsageError(f"unknown data set '{name}'; choose one of: {', '.join(DATASETS)}")


def load_eval_data(name: str, seed: int = 0, limit: int | None = None) -> ImageData:
    """Held-out data for ``fit``: the full set when installed, else the subset shipped for it.

    Only Fashion-MNIST has a shipped subset; the returned ``name`` says which one was used.
    """
    try:
        return load_dataset(name, seed, limit)
    except DataError:
        if name != "fashion-mnist":
            raise
        return load_dataset("fashion-mnist-heldout", seed, limit)
