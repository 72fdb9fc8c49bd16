"""bench_peers' user CNN: examples/user_cnn's TwoBranchNet on Fashion-MNIST (digits for --smoke).

55k training images fine-tune, 5k validation images make every choice, 10k test images are only reported
(accuracy with its 95% Wilson interval). The dense start model ships in bench/checkpoints/ (bench/peers/dense.py).
Peers: Torch-Pruning (magnitude and Taylor, each round_to a knob family) and AIMET spatial SVD where it installs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from peers import aimet_svd
from peers import dense as dense_start   # puts examples/user_cnn on sys.path: the user's project
from peers.task import Peer
from peers.torch_pruning_peer import prune, safe_ignored_layers

import mynet  # noqa: E402,I100  (the user's project, outside the package)

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "user_cnn_fmnist_dense.pt"


@dataclass
class Data:
    """train (fine-tuning), val (every choice: importance, ratios, plans), test (reported only)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @classmethod
    def load(cls, name: str) -> "Data":
        return cls(*mynet.load(name))

    def batches(self, seed: int, batch: int = 64) -> list:
        """One epoch of shuffled (x, y) training batches; the order is the seed's."""
        order = torch.randperm(len(self.train_x), generator=torch.Generator().manual_seed(seed))
        return [(self.train_x[i], self.train_y[i]) for i in order.split(batch)]


@torch.no_grad()
def correct(model, x, y) -> int:
    model.eval()
    return sum(int((model(a).argmax(1) == b).sum()) for a, b in zip(x.split(500), y.split(500)))


class UserCnnTask:
    key = "user-cnn"
    metrics = ("test accuracy",)
    val_name = "val_accuracy"
    maestro_starts = ("svd", "lod")
    levers = ("plan choice",)

    def __init__(self, work: Path, smoke: bool, epochs: int = 1, train_images: int | None = None,
                 round_to: tuple = (None, 8, 16, 32), lr: float = 1e-3):
        self.data = Data.load("digits" if smoke else "fashion-mnist")
        if train_images:
            self.data.train_x, self.data.train_y = self.data.train_x[:train_images], self.data.train_y[:train_images]
        self.epochs, self.lr = epochs, lr
        self.round_to = (None, 16) if smoke else round_to
        self.fine_tuning = f"{epochs} epoch(s) of {len(self.data.train_x)} training images"
        self.dense = self._dense(work, smoke)
        self.example = (self.data.train_x[:1],)

    def _dense(self, work: Path, smoke: bool):
        if not smoke and SHIPPED.is_file():
            model, info = dense_start.load(SHIPPED)
        elif (work / "dense.pt").is_file():
            model, info = dense_start.load(work / "dense.pt")
        else:
            model, info = dense_start.train_dense("digits" if smoke else "fashion-mnist", epochs=3,
                                                  width=16 if smoke else 32)
            dense_start.save(model, info, work / "dense.pt")
        print(f"dense start model: {json.dumps(info)}")
        return model

    # ---- scores ---------------------------------------------------------------------------------------------
    def val_score(self, model) -> float:
        return correct(model, self.data.val_x, self.data.val_y) / len(self.data.val_x)

    def test_scores(self, model) -> dict[str, dict]:
        """Test accuracy with its 95% Wilson interval (the same interval fit.json gives)."""
        from maestro_edge.quality import wilson_interval

        hits, n = correct(model, self.data.test_x, self.data.test_y), len(self.data.test_x)
        low, high = wilson_interval(hits, n)
        return {"test accuracy": {"value": hits / n, "low": low, "high": high, "n": n}}

    def calibration(self) -> list:
        return list(self.data.val_x.split(128))

    # ---- training -------------------------------------------------------------------------------------------
    def factorize_(self, model) -> None:
        import maestro_edge as me

        me.factorize_(model)

    def train_lod_(self, model) -> None:
        import maestro_edge as me

        torch.manual_seed(0)
        me.train_lod(model, self.data.batches(0), F.cross_entropy, epochs=self.epochs, lr=self.lr, teacher=self.dense)

    def importance(self, model):
        import maestro_edge as me

        return me.importance_table(model, self.val_score, self.example[0])

    def finetune(self, model, seed: int, max_steps: int | None = None) -> dict:
        """``me.recover``'s loop: cross-entropy plus distillation from the dense model, BatchNorm recalibrated."""
        import maestro_edge as me

        torch.manual_seed(seed)
        return me.recover(model, self.data.batches(seed), F.cross_entropy, teacher=self.dense,
                          epochs=self.epochs if max_steps is None else 10 ** 6, max_steps=max_steps,
                          lr=self.lr, calibration=self.calibration())

    def steps_per_finetune(self) -> int:
        return self.epochs * len(self.data.batches(0))

    # ---- peers ----------------------------------------------------------------------------------------------
    def peers(self, grid, work: Path) -> list[Peer]:
        ignored = safe_ignored_layers(self.dense, self.example[0], ["classifier"])
        grads, example = self.data.batches(0)[:8], self.example[0]
        peers = {imp: Peer(f"tp-{imp}", f"Torch-Pruning {imp}",
                           [{"round_to": r, "grid": grid(0.0, 0.95)} for r in self.round_to],
                           lambda f, ratio, imp=imp: prune(self.dense, example, imp, ratio, f["round_to"], ignored,
                                                           grads))
                 for imp in ("magnitude", "taylor")}
        if aimet_svd.available():
            greedy = str(work / "aimet-greedy-eval-scores.pkl")   # AIMET's per-layer table, reused across targets

            def spatial_svd(family, ratio):
                if family["mode"] == "auto":
                    return aimet_svd.spatial_svd_auto(self.dense, example, self.val_score, ratio,
                                                      eval_scores_path=greedy)[0]
                return aimet_svd.spatial_svd_manual(self.dense, example, ratio)[0]
            peers["aimet"] = Peer("aimet-svd", "AIMET spatial SVD",
                                  [{"mode": m, "grid": grid(1.0, 0.05)} for m in ("auto", "manual")], spatial_svd)
        else:
            print("AIMET is not installed (bench/peers/install_aimet.sh): its rows are left out")
        return [peers[name] for name in ("magnitude", "aimet", "taylor") if name in peers]
