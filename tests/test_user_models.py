"""Models nobody here wrote, through the public API and then the CLI in a fresh process (no user code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import maestro_edge as me

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parents[1] / "examples" / "user_cnn"


def cli(*argv, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maestro_edge.cli", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def check_exports(folder: Path, ckpt: "me.LoDCheckpoint", calibration=None) -> dict:
    """The .pte runs in the ExecuTorch runtime and .onnx in onnxruntime, both matching eager on the real inputs.

    ``calibration``: the batches the fit recalibrated BatchNorm on (``--calibrate``), to rebuild the same model.
    """
    import onnxruntime as ort
    from executorch.runtime import Runtime

    from maestro_edge.export.truncate import deployable

    record = json.loads((folder / "fit.json").read_text())
    small = deployable(ckpt.model, record["ranks"])
    if calibration is not None:
        from maestro_edge.quality import recalibrate_bn_batches_

        recalibrate_bn_batches_(small, calibration)
    with torch.no_grad():
        expected = small(*ckpt.examples)
    expected = expected if isinstance(expected, torch.Tensor) else expected[0]
    pte = (folder / "model.pte").read_bytes()   # the runtime reads this buffer: keep it alive
    program = Runtime.get().load_program(pte)
    method = program.load_method("forward")
    assert (method.execute(ckpt.examples)[0] - expected).abs().max() <= 1e-4
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(["input_0", "input_1"] if len(ckpt.examples) > 1 else ["input"], ckpt.examples))
    got = session.run(None, {n: feeds[n].numpy() for n in names})[0]
    assert abs(got - expected.numpy()).max() <= 1e-4
    batch = session.get_inputs()[0].shape[0]
    assert not isinstance(batch, int), "the .onnx batch dimension is dynamic"
    return record


class Encoder(torch.nn.Module):
    """What a user writes around an HF model: token ids and attention mask in, hidden states out."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def test_a_random_bert_encoder_fits_on_the_host(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32)
    model = Encoder(transformers.BertModel(config, add_pooling_layer=False)).eval()
    ids = torch.randint(0, 120, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[0, 9:] = 0   # padding: the mask matters
    held_out = (torch.randint(0, 120, (8, 12)), torch.ones(8, 12, dtype=torch.long))
    with torch.no_grad():
        reference = model(*held_out).mean(1)

    def cosine(m):   # the user's metric: mean cosine of pooled embeddings to the original's
        return float(torch.nn.functional.cosine_similarity(m(*held_out).mean(1), reference).mean())

    report = me.factorize_(model)
    assert len(report.swapped) == 6   # q, k, v, attention output, both FFN layers
    table = me.importance_table(model, cosine, (ids, mask))
    me.LoDCheckpoint.from_model(model, (ids, mask), importance=table).save(tmp_path / "bert.lod")

    done = cli("fit", "--model", str(tmp_path / "bert.lod"), "--device", "host", "--ms", "100",
               "--out", str(tmp_path / "fit"), "--allow-busy", "--quiet")
    assert done.returncode == 0, done.stderr
    ckpt = me.LoDCheckpoint.load(tmp_path / "bert.lod")
    record = check_exports(tmp_path / "fit", ckpt)
    assert record["latency_source"] == "measured" and record["measured_ms"] > 0
    assert record["metric"] == {"name": "cosine", "higher_is_better": True, "source": "estimated"}
    assert not record["delegation"]["fully_delegated"]   # layer norm, embedding... run on portable kernels
    assert "aten.embedding.default" in record["delegation"]["undelegated_ops"]
    assert set(record["ranks"].values()) == {"dense"} or not record["budget_binding"]

    refused = cli("fit", "--model", str(tmp_path / "bert.lod"), "--device", "host", "--ms", "100",
                  "--out", str(tmp_path / "strict"), "--full-delegation", "--quiet")
    assert refused.returncode != 0 and "XNNPACK did not take" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "strict").exists()
