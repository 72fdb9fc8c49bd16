"""Offline data: digits, Fashion-MNIST from the Debian package, the shipped held-out subset."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from maestro_edge.data import DATASETS, load_dataset, load_eval_data
from maestro_edge.data import fashion_mnist as fm
from maestro_edge.errors import DataError, UsageError

INSTALLED = all((fm.DEFAULT_DIR / name).is_file() for name in fm.FILES.values())


@pytest.fixture
def fashion():
    """Skip without the Debian package, except under CI (where a silent skip would hide a broken install)."""
    if not INSTALLED:
        message = "Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    return fm.DEFAULT_DIR


def _write_idx(path, array: np.ndarray) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path, monkeypatch):
    """A fake install: 100 train and 20 test images in the package's IDX format, found via the env var."""
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / fm.FILES["train_x"], rng.integers(0, 256, (100, 28, 28)))
    _write_idx(tmp_path / fm.FILES["train_y"], np.arange(100) % 10)
    _write_idx(tmp_path / fm.FILES["test_x"], rng.integers(0, 256, (20, 28, 28)))
    _write_idx(tmp_path / fm.FILES["test_y"], np.arange(20) % 10)
    monkeypatch.setenv(fm.ENV_DIR, str(tmp_path))
    monkeypatch.setattr(fm, "VAL_SIZE", 10)
    return tmp_path


def test_digits_split_and_limit():
    full = load_dataset("digits", seed=0)
    assert (len(full.train_x), len(full.val_x), len(full.test_x)) == (1079, 359, 359)
    assert full.input_shape == (1, 1, 8, 8) and full.in_channels == 1 and full.num_classes == 10
    small = load_dataset("digits", seed=0, limit=50)
    assert len(small.train_x) == len(small.val_x) == len(small.test_x) == 50
    assert torch.equal(small.val_x, full.val_x[:50])            # a limit takes a prefix of the same split


def test_unknown_data_set_and_bad_limit():
    with pytest.raises(UsageError, match="choose one of: digits, fashion-mnist, fashion-mnist-heldout"):
        load_dataset("cifar10")
    with pytest.raises(UsageError, match="limit"):
        load_dataset("digits", limit=0)
    assert DATASETS == ("digits", "fashion-mnist", "fashion-mnist-heldout")


def test_missing_package_is_a_one_line_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv(fm.ENV_DIR, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist")
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message


def test_corrupt_idx_is_a_data_error(tiny_fashion):
    (tiny_fashion / fm.FILES["test_x"]).write_bytes(gzip.compress(b"\0\0\x08\x03" + struct.pack(">III", 20, 28, 28)))
    with pytest.raises(DataError, match="truncated"):
        load_dataset("fashion-mnist")
    (tiny_fashion / fm.FILES["test_x"]).write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("fashion-mnist")


def test_validation_is_carved_out_of_train(tiny_fashion):
    data = load_dataset("fashion-mnist", seed=3)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (90, 10, 20)
    train, val = fm.split_indices(3, 100, 10)
    assert not set(train.tolist()) & set(val.tolist())
    raw = fm.read_raw()
    torch.testing.assert_close(data.val_x, fm.normalize(raw["train_x"][val.numpy()]))
    torch.testing.assert_close(data.test_x, fm.normalize(raw["test_x"]))
    other = load_dataset("fashion-mnist", seed=4)
    assert not torch.equal(other.val_x, data.val_x)
    limited = load_dataset("fashion-mnist", seed=3, limit=5)
    assert len(limited.train_x) == len(limited.val_x) == len(limited.test_x) == 5
    assert torch.equal(limited.val_x, data.val_x[:5])


def test_heldout_export_round_trip(tiny_fashion, tmp_path):
    path = fm.export_heldout(tmp_path / "assets" / "heldout.npz", seed=0, n_val=4, n_test=6)
    full = load_dataset("fashion-mnist", seed=0)
    held = fm.load_heldout(seed=0, path=path)
    assert held.name == "fashion-mnist-heldout" and len(held.train_x) == 0
    assert held.input_shape == (1, 1, 28, 28) and held.in_channels == 1
    assert torch.equal(held.val_x, full.val_x[:4]) and torch.equal(held.val_y, full.val_y[:4])
    assert torch.equal(held.test_x, full.test_x[:6]) and torch.equal(held.test_y, full.test_y[:6])
    with np.load(path) as blob:
        assert blob["val_x"].dtype == np.uint8 and len(blob["source_sha256"]) == 2
    with pytest.raises(DataError, match="seed 0, but seed 1"):
        fm.load_heldout(seed=1, path=path)
    with pytest.raises(DataError, match="missing"):
        fm.load_heldout(path=tmp_path / "none.npz")


def test_eval_data_falls_back_to_the_shipped_subset(tmp_path, monkeypatch, tiny_fashion):
    path = fm.export_heldout(tmp_path / "heldout.npz", n_val=3, n_test=3)
    monkeypatch.setattr(fm, "HELDOUT_PATH", path)
    assert load_eval_data("fashion-mnist").name == "fashion-mnist"
    monkeypatch.setenv(fm.ENV_DIR, str(tmp_path / "nowhere"))
    fallback = load_eval_data("fashion-mnist")
    assert fallback.name == "fashion-mnist-heldout" and len(fallback.test_x) == 3
    assert load_dataset("fashion-mnist-heldout").name == "fashion-mnist-heldout"


def test_real_fashion_mnist(fashion):
    data = load_dataset("fashion-mnist", seed=0)
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (55_000, 5_000, 10_000)
    assert data.train_x.dtype == torch.float32 and data.input_shape == (1, 1, 28, 28)
    assert abs(data.train_x.mean().item()) < 0.01 and abs(data.train_x.std().item() - 1) < 0.01
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


def test_real_heldout_export_is_small(fashion, tmp_path):
    path = fm.export_heldout(tmp_path / "heldout.npz")
    assert path.stat().st_size < 2_000_000
    held = fm.load_heldout(path=path)
    assert len(held.val_x) == len(held.test_x) == 1000


def test_the_shipped_heldout_subset():
    held = load_dataset("fashion-mnist-heldout", seed=0)
    assert len(held.val_x) == len(held.test_x) == 1000 and held.input_shape == (1, 1, 28, 28)
    assert fm.HELDOUT_PATH.stat().st_size < 2_000_000
