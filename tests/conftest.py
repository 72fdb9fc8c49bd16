"""Shared fixtures: an isolated cache, and a tiny trained LoD checkpoint (seconds to build)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Latency tables go to a fresh folder, never the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MAESTRO_EDGE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A small CNN LoD-trained for a few epochs on scikit-learn digits, saved as a checkpoint."""
    from maestro_edge.train.loop import Recipe
    from maestro_edge.train.run import train_checkpoint

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.lod.pt"
    train_checkpoint("small_cnn", "digits", Recipe(epochs=4, batch_size=64, lr=0.05), path,
                     arch_kwargs={"widths": [16, 32, 64, 64], "hidden": 64})
    return path
