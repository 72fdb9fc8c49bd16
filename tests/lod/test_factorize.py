"""factorize_ on models it was not written for: a BERT-style block and CNNs with grouped convs.

What gets swapped and what does not, and why:

- every plain ``nn.Linear`` (q/k/v/out projections, FFN) and ``nn.Conv2d`` with groups=1 and zero
  padding is swapped for its LoD layer;
- ``nn.MultiheadAttention`` is left alone: its input projection is a raw ``in_proj_weight``
  parameter (no module to swap), and its ``out_proj`` is a ``NonDynamicallyQuantizableLinear``
  whose ``.weight``/``.bias`` the attention function reads directly, so swapping it would break
  the module. ``factorize_`` selects modules by exact type, so it does not even list out_proj among
  the skipped layers (the report shows only what it considered);
- grouped/depthwise convolutions and non-zero padding modes are skipped with the reason.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.lod.layers import LoDConv2d, LoDLinear, lod_layers
from maestro_edge.models import build_model


class TinyBertBlock(nn.Module):
    """Post-LN BERT layer with hand-written q/k/v/out + FFN, plus an nn.MultiheadAttention branch."""

    def __init__(self, dim=16, heads=2, ffn=32, vocab=50):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = nn.Linear(dim, 3)

    def forward(self, tokens):
        x = self.embed(tokens)
        b, t, d = x.shape

        def split(z):
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        att = torch.nn.functional.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        x = self.ln1(x + self.out(att.transpose(1, 2).reshape(b, t, d)))
        x = self.ln2(x + self.ffn(x))
        x = x + self.mha(x, x, x, need_weights=False)[0]
        return self.head(x.mean(1))


def test_bert_style_block_is_factorized_around_multihead_attention():
    torch.manual_seed(0)
    model = TinyBertBlock().eval()
    tokens = torch.randint(0, 50, (3, 7))
    expect = model(tokens)
    report = factorize_(model)
    assert set(report.swapped) == {"q", "k", "v", "out", "ffn.0", "ffn.2", "head"}
    assert report.swapped["ffn.0"] == 16 and report.swapped["head"] == 3
    assert set(report.skipped) == {"mha.out_proj"}   # MHA reads out_proj.weight itself: reported, left dense
    assert "left dense" in report.skipped["mha.out_proj"]
    assert type(model.mha.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert isinstance(model.mha.in_proj_weight, nn.Parameter)
    torch.testing.assert_close(model(tokens), expect, atol=1e-5, rtol=1e-5)
    # it trains and truncates like any LoD model
    model.train()
    for layer in lod_layers(model).values():
        layer.sampled_rank = 1
    model(tokens).sum().backward()
    assert model.q.u.grad is not None and model.mha.in_proj_weight.grad is not None
    for name, layer in lod_layers(model).items():
        layer.sampled_rank = None
        layer.truncate_(2)
    assert model(tokens).shape == (3, 3)


def test_overrides_skip_and_cap_by_name_and_pattern():
    model = TinyBertBlock()
    report = factorize_(model, FactorizeConfig(max_rank=8, overrides={"head": "skip", "re:ffn\\..*": 4}))
    assert report.skipped["head"] == "skipped by override"
    assert report.swapped["ffn.0"] == report.swapped["ffn.2"] == 4 and report.swapped["q"] == 8
    assert type(model.head) is nn.Linear


class MobileBlock(nn.Module):
    """Depthwise-separable + grouped convs, as in MobileNet / ResNeXt."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.reflect = nn.Conv2d(16, 16, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.reflect(self.grouped(self.pointwise(self.depthwise(self.stem(x)))))
        return self.fc(x.mean((2, 3)))


def test_grouped_and_depthwise_convs_are_skipped_and_reported():
    torch.manual_seed(0)
    model = MobileBlock()
    x = torch.randn(2, 1, 28, 28)
    expect = model(x)
    report = factorize_(model)
    assert set(report.swapped) == {"stem", "pointwise", "fc"}
    assert set(report.skipped) == {"depthwise", "grouped", "reflect"}
    assert "groups" in report.skipped["depthwise"] and "groups" in report.skipped["grouped"]
    assert "padding_mode" in report.skipped["reflect"]
    assert "skipped depthwise" in str(report)
    assert isinstance(model.stem, LoDConv2d) and type(model.depthwise) is nn.Conv2d
    torch.testing.assert_close(model(x), expect, atol=1e-4, rtol=1e-4)


def test_resnet18_is_fully_factorized_as_in_the_paper():
    torch.manual_seed(0)
    model = build_model("resnet18", 3, 10)
    report = factorize_(model)
    assert len(report.swapped) == 21 and not report.skipped        # 20 convs (3 shortcuts) + fc
    assert sum(report.swapped.values()) == 4325                     # Σ r_i of maestro.md §2.3
    assert isinstance(model.fc, LoDLinear) and report.swapped["conv1"] == 27


def test_a_loaded_checkpoint_computes_what_was_saved_without_any_svd(tmp_path, monkeypatch):
    import maestro_edge.lod.layer_base as layer_base
    from maestro_edge.lod.checkpoint import LoDCheckpoint
    from maestro_edge.models import build_model

    torch.manual_seed(0)
    arch = {"name": "small_cnn", "in_channels": 1, "num_classes": 10, "kwargs": {"widths": [4, 8], "hidden": 8}}
    model = build_model(arch["name"], 1, 10, **arch["kwargs"])
    factorize_(model)
    first = next(iter(lod_layers(model).values()))
    first.active_rank = max(1, first.max_rank // 2)
    LoDCheckpoint(model=model.eval(), arch=arch, data={"name": "digits", "input_shape": [1, 1, 8, 8]}).save(
        tmp_path / "m.pt")
    monkeypatch.setattr(layer_base, "balanced_svd", lambda *a: pytest.fail("loading must not run an SVD"))
    loaded = LoDCheckpoint.load(tmp_path / "m.pt").model
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
