"""The one dense model every method starts from: examples/user_cnn's TwoBranchNet, trained once (fixed seed).

    python bench/peers/dense.py --data fashion-mnist --epochs 3 --out bench/checkpoints/user_cnn_fmnist_dense.pt

The checkpoint is a plain state_dict plus how it was made, shipped in the repository so a benchmark run does not
retrain it (the user's own loop: examples/user_cnn/finetune.py dense_training).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "user_cnn"))

import mynet  # noqa: E402  (the user's project, outside the package)
from finetune import dense_training  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and its waited children (all threads): the compute a step costs."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def train_dense(data: str, epochs: int, width: int = 32, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    train_x, train_y, _, _, test_x, test_y = mynet.load(data)
    model = mynet.TwoBranchNet(width)
    wall, cpu = time.perf_counter(), cpu_seconds()
    dense_training(model, train_x, train_y, epochs)
    model.eval()
    with torch.no_grad():
        correct = sum((model(a).argmax(1) == b).sum().item() for a, b in zip(test_x.split(500), test_y.split(500)))
    info = {"data": data, "epochs": epochs, "width": width, "seed": seed, "train_images": len(train_x),
            "wall_s": round(time.perf_counter() - wall, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
            "test_accuracy": correct / len(test_x), "torch": torch.__version__}
    return model, info


def save(model: torch.nn.Module, info: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def load(path: Path) -> tuple[torch.nn.Module, dict]:
    info = json.loads(path.with_suffix(".json").read_text())
    model = mynet.TwoBranchNet(info["width"])
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval(), info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist", "digits"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model, info = train_dense(args.data, args.epochs, args.width)
    save(model, info, args.out)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
