"""scikit-learn's bundled digits: 1,797 real 8×8 handwritten digits, shipped inside the wheel."""

from __future__ import annotations

import numpy as np
import torch

from maestro_edge.data.base import ImageData, take

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


def load_digits_data(seed: int = 0, limit: int | None = None) -> ImageData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy((digits.images / 16.0 - 0.5).astype(np.float32)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val, n_test = int(len(order) * VAL_FRACTION), int(len(order) * TEST_FRACTION)
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    val, test, train = take(val, limit), take(test, limit), take(train, limit)
    return ImageData("digits", 10, images[train], labels[train], images[val], labels[val],
                     images[test], labels[test])
