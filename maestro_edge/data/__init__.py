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

from maestro_edge.data.base import ImageData
from maestro_edge.errors import DataError, UsageError

DATASETS = ("digits", "fashion-mnist", "fashion-mnist-heldout")


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
