"""Non-LoD ops priced from the exported program (latency/program_ops.py). Every latency here is an ESTIMATE."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
import transformers   # in the test extra: a missing install fails here rather than skipping
from torch import nn

from maestro_edge import FactorizeConfig, factorize_
from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.estimate import sustained_memory_gbs
from maestro_edge.latency.estimated import DENSE, estimate_layer_ms
from maestro_edge.latency.probes import layer_input_shapes
from maestro_edge.latency.program_ops import estimate_other_ops_ms, other_ops
from maestro_edge.lod.layers import lod_layers

C, HW = 16, 16


class TinyCNN(nn.Module):
    """Stem conv + BN + ReLU (fused), depthwise conv (LoD leaves it dense), 1x1 conv, residual add,
    avg pool, upsample, concat, global mean, linear head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, C, 3, padding=1), nn.BatchNorm2d(C)
        self.dw, self.pw = nn.Conv2d(C, C, 3, padding=1, groups=C), nn.Conv2d(C, C, 1)
        self.head = nn.Linear(2 * C, 10)

    def forward(self, x):
        y = F.relu(self.bn(self.stem(x)), inplace=True)    # exported as aten.relu_: must fuse all the same
        z = self.pw(F.relu(self.dw(y))) + y
        up = F.interpolate(F.avg_pool2d(z, 2), scale_factor=2, mode="nearest")
        return self.head(torch.cat([z, up], 1).mean((2, 3)))


def cnn(max_rank=None):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    factorize_(model, FactorizeConfig(max_rank=max_rank))
    return model


X = (torch.randn(1, 3, HW, HW),)


@pytest.fixture(scope="module")
def pixel7():
    return find_profile("pixel7")


def test_cnn_prices_depthwise_pool_resize_concat_and_fuses_bn_relu():
    model = cnn()
    ops = other_ops(model, X, set(lod_layers(model)))
    # BatchNorm folds into the stem conv and each ReLU into the conv before it (XNNPACK's fusion passes).
    assert sorted(op.target for op in ops) == ["aten.add", "aten.avg_pool2d", "aten.cat", "aten.conv2d", "aten.mean",
                                               "aten.upsample_nearest2d"]
    (dw,) = [op for op in ops if op.target == "aten.conv2d"]
    assert dw.kind == "gemm" and dw.module == "dw"
    assert dw.macs == HW * HW * C * 3 * 3            # per output pixel and channel: one 3x3 window of one channel
    assert dw.gemms[0][0].is_depthwise
    cat = next(op for op in ops if op.target == "aten.cat")
    assert cat.bytes == 2 * 4 * (C * HW * HW + C * HW * HW)   # both inputs read, the output written
    assert all(op.ms(find_profile("rpi5")) > 0 for op in ops)


def test_lod_layers_are_left_to_the_table(pixel7):
    """Pricing the dense model with nothing skipped = the factorized model with its LoD layers skipped, plus
    exactly what the estimated table charges for those layers at dense; and the factor ranks change nothing."""
    dense, model = TinyCNN().eval(), cnn()
    lod = lod_layers(model)
    skipped = estimate_other_ops_ms(model, X, pixel7, set(lod))
    assert skipped.total_ms > 0
    assert not any(op.module == name or op.module.startswith(name + ".") for op in skipped.ops for name in lod)
    shapes = layer_input_shapes(model, X)
    table_ms = sum(estimate_layer_ms(pixel7, layer, shapes[name], DENSE) for name, layer in lod.items())
    everything = estimate_other_ops_ms(dense, X, pixel7, set()).total_ms
    assert everything == pytest.approx(skipped.total_ms + table_ms, rel=1e-9)
    low = cnn(max_rank=2)
    assert estimate_other_ops_ms(low, X, pixel7, set(lod_layers(low))).total_ms == pytest.approx(skipped.total_ms)


def test_layout_ops_cost_a_copy_only_when_they_move_data(pixel7):
    class Layout(nn.Module):
        def forward(self, x):
            return (x.transpose(0, 1) + 1, x.transpose(2, 3) + 1,
                    x.expand(1, -1, -1, -1) + 1, x.expand(2, -1, -1, -1) + 1)

    ops = other_ops(Layout(), X, set())
    assert sum(op.target == "aten.add" for op in ops) == 4
    copies = [op.bytes for op in ops if op.target in ("aten.transpose", "aten.expand")]
    assert copies == [2 * X[0].numel() * 4, 2 * 2 * X[0].numel() * 4]   # the batch-1 swap and same-size expand: free


def test_unknown_op_is_priced_as_memory_and_listed(pixel7):
    class Flip(nn.Module):
        def forward(self, x):
            return torch.flip(x, [1]) * 2

    model = Flip().train()
    estimate = estimate_other_ops_ms(model, X, pixel7, set())
    assert estimate.unclassified == ["aten.flip"]
    flip = next(op for op in estimate.ops if op.target == "aten.flip")
    assert flip.kind == "memory" and flip.bytes == 2 * X[0].numel() * 4
    assert model.training                           # exported in eval mode, mode restored


@lru_cache(maxsize=None)
def bert(attention: str = "eager", vocab: int = 1000):
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                                     vocab_size=vocab, attn_implementation=attention)
    model = transformers.BertModel(config).eval()
    factorize_(model)
    return model


def ids(seq: int, vocab: int = 1000):
    return torch.randint(0, vocab, (1, seq)), torch.ones(1, seq, dtype=torch.int64)


def bert_ops(seq=16, attention="eager", vocab=1000):
    model = bert(attention, vocab)
    return other_ops(model, ids(seq, vocab), set(lod_layers(model)))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_bert_attention_matmuls_norms_and_activations(attention):
    seq, heads, head_dim = 16, 2, 32
    ops = bert_ops(seq, attention)
    targets = {op.target for op in ops}
    assert {"aten.layer_norm", "aten.gelu", "aten.embedding"} <= targets
    assert "aten.linear" not in targets              # every Linear is a LoD layer: the table prices it
    for layer in range(2):
        attn = [op for op in ops if op.kind == "gemm" and op.module == f"encoder.layer.{layer}.attention.self"]
        assert sum(op.macs for op in attn) == 2 * 1 * heads * seq * seq * head_dim   # q @ k^T and attn @ v
    # Heads split and merged by transposes: copies in ExecuTorch (q, k, v, the output; eager adds k^T).
    head_copies = [op.bytes for op in ops
                   if op.target == "aten.transpose" and op.module == "encoder.layer.0.attention.self"]
    assert head_copies == [2 * seq * 64 * 4] * (5 if attention == "eager" else 4)
    if attention == "eager":
        assert sum(op.target == "aten.softmax" for op in ops) == 2
        assert sum(op.target == "aten.matmul" for op in ops) == 4
    else:                                            # softmax is inside SDPA: its score matrix is streamed
        sdpa = next(op for op in ops if op.target == "aten.scaled_dot_product_attention")
        assert sdpa.memory_bytes >= 2 * heads * seq * seq * 4


def test_embedding_bytes_follow_rows_gathered_not_vocab():
    def word_embedding(ops):
        return next(op.bytes for op in ops if op.module == "embeddings.word_embeddings")

    assert word_embedding(bert_ops(16, vocab=1000)) == word_embedding(bert_ops(16, vocab=5000))
    assert word_embedding(bert_ops(32)) == 2 * word_embedding(bert_ops(16))


def test_estimate_grows_with_sequence_and_shrinks_with_bandwidth():
    rpi5 = find_profile("rpi5")
    model, skip = bert(), set(lod_layers(bert()))
    short, long = (estimate_other_ops_ms(model, ids(seq), rpi5, skip) for seq in (16, 32))
    assert long.total_ms > short.total_ms
    gbs = sustained_memory_gbs(rpi5)
    faster = dataclasses.replace(rpi5, hardware={**rpi5.hardware, "memory_gbs": 2 * rpi5.hardware["memory_gbs"],
                                                 "memory_gbs_sustained": 2 * gbs})
    memory = lambda ops, profile: sum(op.ms(profile) for op in ops if op.kind == "memory")   # noqa: E731
    assert memory(short.ops, faster) < memory(short.ops, rpi5)
    assert estimate_other_ops_ms(model, ids(16), faster, skip).total_ms < short.total_ms
    op = next(op for op in short.ops if op.target == "aten.layer_norm")
    assert op.ms(rpi5) == pytest.approx(rpi5.estimate["per_op_overhead_ms"] + op.bytes / (gbs * 1e6))
