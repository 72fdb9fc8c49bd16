"""Shared fixtures: an isolated cache, the test default model, and a tiny trained LoD checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The embedded default (ResNet-18 on Fashion-MNIST at 96x96, 5 GMAC) takes minutes per fit on a 2-core
# machine. Tests that do not pass --model get this small digits CNN (the previous default) instead;
# tests marked ``real_default`` run the shipped model.
DIGITS_MODEL = Path(__file__).parent / "fixtures" / "digits.lod.pt"


def pytest_configure(config):
    config.addinivalue_line("markers", "real_default: runs the embedded default model (slow: minutes)")


@pytest.fixture(autouse=True)
def _test_default_model(request, monkeypatch):
    if request.node.get_closest_marker("real_default") is None:
        monkeypatch.setattr("maestro_edge.cli.DEFAULT_MODEL", DIGITS_MODEL)


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
