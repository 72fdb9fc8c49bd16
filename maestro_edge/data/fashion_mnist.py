"""Fashion-MNIST (Xiao et al. 2017; Expat, © Zalando SE) from Debian's ``dataset-fashion-mnist``.

60,000 training and 10,000 test images, 28×28 grey, 10 balanced classes, read from the package's IDX
files (nothing is downloaded). The validation split is carved out of the TRAIN file (5,000 images,
chosen by the seed); the test file is never used for anything but reporting.

A small held-out subset (validation images of seed 0 plus test images, uint8, ~1 MB) can be exported
with ``export_heldout`` and shipped in ``maestro_edge/assets/`` next to the default model, so ``fit``
can recalibrate BatchNorm and measure accuracy on a machine without the package:
``python -m maestro_edge.data.fashion_mnist export-heldout``.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import torch

from maestro_edge.data.base import ImageData, take
from maestro_edge.errors import DataError
from maestro_edge.user_files import file_sha256

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_DIR = "MAESTRO_EDGE_FASHION_MNIST_DIR"    # another folder with the four IDX .gz files
FILES = {"train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
         "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz"}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530        # of the 60k training images, pixel values in [0, 1]
VAL_SIZE = 5000
HELDOUT_PATH = Path(__file__).resolve().parents[1] / "assets" / "fashion-mnist-heldout.npz"
HELDOUT_FORMAT = "maestro-edge-heldout-v1"


def data_dir(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get(ENV_DIR) or DEFAULT_DIR)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped) as a uint8 array of its stated shape."""
    try:
        with gzip.open(path, "rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:3] != b"\0\0\x08":
                raise DataError(f"{path} is not an IDX file of unsigned bytes; reinstall dataset-fashion-mnist")
            shape = struct.unpack(">" + "I" * magic[3], f.read(4 * magic[3]))
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError, struct.error) as e:
        raise DataError(f"cannot read {path} ({type(e).__name__}); reinstall dataset-fashion-mnist") from None
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} bytes); reinstall dataset-fashion-mnist")
    return data.reshape(shape)


def read_raw(root: str | Path | None = None) -> dict[str, np.ndarray]:
    """The four arrays as uint8 (images N×28×28, labels N), straight from the IDX files."""
    folder = data_dir(root)
    missing = [name for name in FILES.values() if not (folder / name).is_file()]
    if missing:
        raise DataError(f"Fashion-MNIST is not installed ({folder / missing[0]} is missing); "
                        "install it with: apt-get install dataset-fashion-mnist")
    return {key: read_idx(folder / name) for key, name in FILES.items()}


def normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 N×28×28 -> float32 N×1×28×28, standardised with the training set's mean and std."""
    x = torch.from_numpy(np.require(images, np.uint8, ["C", "W"])).to(torch.float32).div_(255.0)
    return x.sub_(MEAN).div_(STD).unsqueeze(1)


def _labels(y: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(y.astype(np.int64))


def split_indices(seed: int, n_train: int = 60000, val_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into the TRAIN file: a seeded permutation, the first ``val_size`` held out."""
    val_size = VAL_SIZE if val_size is None else val_size
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def load_fashion_mnist(seed: int = 0, limit: int | None = None, root: str | Path | None = None) -> ImageData:
    """Train 55,000 / val 5,000 (both from TRAIN) / test 10,000; ``limit`` caps each split."""
    raw = read_raw(root)
    train, val = split_indices(seed, len(raw["train_y"]))
    train, val = take(train, limit), take(val, limit)
    test = take(torch.arange(len(raw["test_y"])), limit)
    tx, ty = raw["train_x"], raw["train_y"]
    return ImageData("fashion-mnist", 10, normalize(tx[train.numpy()]), _labels(ty[train.numpy()]),
                     normalize(tx[val.numpy()]), _labels(ty[val.numpy()]),
                     normalize(raw["test_x"][test.numpy()]), _labels(raw["test_y"][test.numpy()]))


def export_heldout(path: str | Path = HELDOUT_PATH, seed: int = 0, n_val: int = 1000, n_test: int = 1000,
                   root: str | Path | None = None) -> Path:
    """Write the first ``n_val`` validation images of ``seed``'s split and the first ``n_test`` test
    images as uint8 arrays (compressed .npz, ~1 MB for 1000 + 1000) with their provenance."""
    raw = read_raw(root)
    _, val = split_indices(seed, len(raw["train_y"]))
    val = val[:n_val].numpy()
    folder = data_dir(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez_compressed(
            f, format=np.array(HELDOUT_FORMAT), seed=np.array(seed),
            val_x=raw["train_x"][val], val_y=raw["train_y"][val], val_index=val.astype(np.int32),
            test_x=raw["test_x"][:n_test], test_y=raw["test_y"][:n_test],
            source_sha256=np.array([file_sha256(folder / FILES["train_x"]), file_sha256(folder / FILES["test_x"])]))
    return path


def load_heldout(seed: int = 0, limit: int | None = None, path: str | Path | None = None) -> ImageData:
    """The shipped subset as ImageData with an EMPTY train split (val and test only)."""
    path = Path(path or HELDOUT_PATH)
    if not path.is_file():
        raise DataError(f"the held-out Fashion-MNIST subset {path} is missing; reinstall maestro-edge, or install "
                        "the full set with: apt-get install dataset-fashion-mnist")
    try:
        with np.load(path, allow_pickle=False) as blob:
            if str(blob["format"]) != HELDOUT_FORMAT:
                raise DataError(f"{path} is not a maestro-edge held-out subset")
            arrays = {k: blob[k] for k in ("val_x", "val_y", "test_x", "test_y")}
            file_seed = int(blob["seed"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"cannot read {path} ({type(e).__name__}); reinstall maestro-edge") from None
    if file_seed != seed:
        raise DataError(f"{path} holds the validation images of seed {file_seed}, but seed {seed} was asked for "
                        "(its validation images may have been trained on); install the full set with: "
                        "apt-get install dataset-fashion-mnist")
    val, test = take(torch.arange(len(arrays["val_y"])), limit), take(torch.arange(len(arrays["test_y"])), limit)
    empty = torch.empty(0, 1, *arrays["val_x"].shape[1:])
    return ImageData("fashion-mnist-heldout", 10, empty, torch.empty(0, dtype=torch.int64),
                     normalize(arrays["val_x"][val.numpy()]), _labels(arrays["val_y"][val.numpy()]),
                     normalize(arrays["test_x"][test.numpy()]), _labels(arrays["test_y"][test.numpy()]))


def main(argv: list[str] | None = None) -> None:
    """``python -m maestro_edge.data.fashion_mnist export-heldout [PATH] [--seed N]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m maestro_edge.data.fashion_mnist")
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export-heldout", help="write the held-out subset to ship beside the default model")
    export.add_argument("path", nargs="?", default=str(HELDOUT_PATH))
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--val", type=int, default=1000)
    export.add_argument("--test", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        out = export_heldout(args.path, args.seed, args.val, args.test)
    except DataError as e:
        sys.exit(f"Error: {e}")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
