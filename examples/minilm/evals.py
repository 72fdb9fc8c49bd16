"""The metrics, as functions of a model: what ``importance_table`` and ``maestro-edge fit --eval`` call.

    maestro-edge fit --model minilm.lod --device host --ms 20 --eval evals:cosine            # from this folder
    maestro-edge fit --model examples/minilm/minilm.lod ... --eval examples.minilm.evals:cosine   # from the repo root

- ``cosine``: mean cosine between the model's embeddings and the original MiniLM's on held-out test sentences
  (higher is better; 1.0 = the original). Inputs padded to 128 tokens: the shape the checkpoint was exported
  at, so it scores eager models and the loaded checkpoint's program alike.
- ``val_cosine``: the same on the validation half of the held-out text (what chooses ranks).
- ``lee_pearson``: Pearson correlation between the model's cosine similarities of the 50 Lee et al. (2005)
  documents (truncated to 128 tokens) and the mean human ratings, over the 1,225 pairs.

The original the cosine compares with has as many transformer blocks as the model scored (a 2-block cut is
compared with the original's first 2 blocks), counted from its module names; ``MINILM_LAYERS`` overrides.
``MINILM_EVAL_SENTENCES`` (default 256) and ``MINILM_VAL_SENTENCES`` (default 128) set how many sentences.
"""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from pathlib import Path

import torch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:   # `--eval examples.minilm.evals:cosine` from the repo root finds the siblings too
    sys.path.insert(0, _HERE)

import corpora  # noqa: E402
import sentence_encoder as se  # noqa: E402

EVAL_SENTENCES = int(os.environ.get("MINILM_EVAL_SENTENCES", "256"))
VAL_SENTENCES = int(os.environ.get("MINILM_VAL_SENTENCES", "128"))
METRIC_NAME = "cosine to the original"


def layers_of(model: torch.nn.Module) -> int:
    """How many transformer blocks the model has (``...layer.<i>...`` module names), or MINILM_LAYERS."""
    if os.environ.get("MINILM_LAYERS"):
        return int(os.environ["MINILM_LAYERS"])
    found = {int(m.group(1)) for name, _ in model.named_modules() for m in [re.search(r"\blayer\.(\d+)\b", name)] if m}
    if not found:
        raise ValueError("cannot tell how many transformer blocks the model has; set MINILM_LAYERS")
    return max(found) + 1


@lru_cache(maxsize=None)
def original(layers: int) -> torch.nn.Module:
    return se.load_encoder(None if layers == 6 else layers)


@lru_cache(maxsize=None)
def _reference(layers: int, split: str, n: int) -> torch.Tensor:
    return se.embed(original(layers), corpora.heldout(split, n), length=None)


def mean_cosine(model: torch.nn.Module, split: str = "test", n: int = EVAL_SENTENCES,
                length: int | None = se.SEQ_LEN) -> float:
    """Mean cosine to the original's embeddings (both L2-normalised: the dot product)."""
    reference = _reference(layers_of(model), split, n)
    got = se.embed(model, corpora.heldout(split, n), batch=64, length=length)
    return float((torch.nn.functional.normalize(got, dim=-1) * reference).sum(-1).mean())


def cosine(model: torch.nn.Module) -> float:
    """Held-out test sentences: the metric fitted models are reported with (``fit --eval evals:cosine``)."""
    return mean_cosine(model, "test", EVAL_SENTENCES)


def val_cosine(model: torch.nn.Module) -> float:
    """Held-out validation sentences: what the importance table (and so the ranks) rests on."""
    return mean_cosine(model, "val", VAL_SENTENCES)


def val_cosine_eager(model: torch.nn.Module) -> float:
    """``val_cosine`` with each batch padded to its longest sentence only: same value (padding is masked),
    ~4x less work; for eager models (the importance table), not for a program exported at 128 tokens."""
    return mean_cosine(model, "val", VAL_SENTENCES, length=None)


def lee_similarity_pearson(embeddings: torch.Tensor) -> float:
    """Pearson r of the embeddings' cosine similarities with the human ratings, over the 1,225 pairs i < j."""
    import numpy as np

    e = torch.nn.functional.normalize(embeddings.double(), dim=-1).numpy()
    human = corpora.lee_human_similarity()[:len(e), :len(e)]
    upper = np.triu_indices(len(e), 1)
    return float(np.corrcoef((e @ e.T)[upper], human[upper])[0, 1])


def lee_embeddings(model, documents: int | None = None) -> torch.Tensor:
    return se.embed(model, corpora.lee_documents()[:documents], length=se.SEQ_LEN)


def lee_pearson(model: torch.nn.Module) -> float:
    """Lee-50 document similarity: Pearson with the human ratings (the original scores ~0.65)."""
    return lee_similarity_pearson(lee_embeddings(model))
