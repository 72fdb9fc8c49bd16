"""User checkpoints: a factorized model of any kind saved as a torch.export program, loaded without its code."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import maestro_edge as me
from maestro_edge.errors import CheckpointError, MaestroError
from maestro_edge.export.truncate import deployable
from maestro_edge.lod.layers import lod_layers


class FunctionalNet(nn.Module):
    """Functional ops around factorizable layers: depthwise conv, spatial mean, concat, upsampling, BN."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(2, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        y = F.interpolate(self.dw(y), scale_factor=self.scale, mode="bilinear")
        return self.fc(torch.cat([y.mean(dim=(2, 3)), y.amax(dim=(2, 3))], 1))


def _checkpoint(model=None, x=None):
    torch.manual_seed(0)
    model = model or FunctionalNet()
    me.factorize_(model)
    x = torch.randn(1, 2, 6, 6) if x is None else x
    return model, x, me.LoDCheckpoint.from_model(model.eval(), x)


def test_round_trip_without_user_code(tmp_path):
    model, x, ckpt = _checkpoint()
    ckpt.save(tmp_path / "m.lod")
    loaded = me.LoDCheckpoint.load(tmp_path / "m.lod")
    assert loaded.digest() == ckpt.digest()
    assert set(lod_layers(loaded.model)) == {"conv", "fc"}   # the depthwise conv stays dense
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), atol=1e-6, rtol=0)
        batch = torch.randn(7, 2, 6, 6)   # the batch dimension stays free
        torch.testing.assert_close(loaded.model(batch), model(batch), atol=1e-5, rtol=0)
    assert loaded.examples[0].equal(x)


_SHARED = {}


@settings(max_examples=12, deadline=None)
@given(conv_rank=st.integers(1, 12), fc_rank=st.integers(1, 5))
def test_truncating_a_loaded_model_equals_truncating_the_original(conv_rank, fc_rank):
    if not _SHARED:
        _SHARED["case"] = _checkpoint()
    model, x, ckpt = _SHARED["case"]
    choices = {"conv": conv_rank, "fc": fc_rank}
    with torch.no_grad():
        torch.testing.assert_close(deployable(ckpt.model, choices)(x), deployable(model, choices)(x), atol=1e-5, rtol=0)


def test_batch_norm_of_a_loaded_model_recalibrates(tmp_path):
    from maestro_edge.quality import recalibrate_bn_batches_

    _, _, ckpt = _checkpoint()
    small = deployable(ckpt.model, {"conv": 3})
    before = small.get_submodule("bn").running_mean.clone()
    assert recalibrate_bn_batches_(small, [torch.randn(8, 2, 6, 6) for _ in range(2)]) == 2
    assert not torch.equal(small.get_submodule("bn").running_mean, before)
    assert not small.get_submodule("bn").training


def test_the_digest_covers_the_forward_code():
    """Same weights, another forward: another model (no stale cached latency table is reused)."""
    torch.manual_seed(0)
    a = FunctionalNet(2.0)
    torch.manual_seed(0)
    b = FunctionalNet(3.0)
    assert _checkpoint(a)[2].digest() != _checkpoint(b)[2].digest()
    assert _checkpoint(a)[2].latency_digest() != _checkpoint(b)[2].latency_digest()


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), side=st.integers(4, 9))
def test_latency_digest_ignores_the_weights_values_only(seed, side):
    """Tables are keyed by latency_digest: other weights (LoD vs SVD of one network) share a table; another
    input shape or another active rank does not."""
    base = _checkpoint(x=torch.zeros(1, 2, 6, 6))[2]
    torch.manual_seed(seed)
    other = _checkpoint(FunctionalNet(), torch.randn(1, 2, 6, 6))[2]
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p))
    assert other.digest() != base.digest()
    assert other.latency_digest() == base.latency_digest()
    resized = _checkpoint(FunctionalNet(), torch.randn(1, 2, side, side))[2]
    assert (resized.latency_digest() == base.latency_digest()) == (side == 6)
    lod_layers(other.model)["conv"].active_rank = 3
    assert other.latency_digest() != base.latency_digest()


def _edited_member(path, dest, suffix: str, edit):
    """A copy of the archive at ``path`` whose JSON member ending in ``suffix`` went through ``edit``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dest, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith(suffix):
                content = json.loads(data)
                edit(content)
                data = json.dumps(content).encode()
            dst.writestr(item, data)
    return dest


def test_pickled_payloads_are_refused(tmp_path):
    _, _, ckpt = _checkpoint()
    path = tmp_path / "m.lod"
    ckpt.save(path)
    def pickled(config):
        next(iter(config["config"].values()))["use_pickle"] = True

    evil = _edited_member(path, tmp_path / "evil.lod", "model_weights_config.json", pickled)
    with pytest.raises(CheckpointError, match="pickled"):
        me.LoDCheckpoint.load(evil)


def test_malformed_metadata_is_one_error(tmp_path):
    _, _, ckpt = _checkpoint()
    path = tmp_path / "m.lod"
    ckpt.save(path)
    def out_of_range(meta):
        meta["lod_layers"]["conv"]["active_rank"] = 999

    bad = _edited_member(path, tmp_path / "bad.lod", "maestro_edge.json", out_of_range)
    with pytest.raises(CheckpointError, match="inconsistent"):
        me.LoDCheckpoint.load(bad)


def test_from_model_refuses_what_it_cannot_save():
    model = FunctionalNet()
    with pytest.raises(MaestroError, match="factorize_"):
        me.LoDCheckpoint.from_model(model, torch.randn(1, 2, 6, 6))
    me.factorize_(model)
    with pytest.raises(MaestroError, match="example inputs"):
        me.LoDCheckpoint.from_model(model, torch.randn(1, 3, 6, 6))       # wrong channel count
    with pytest.raises(MaestroError, match="example inputs"):
        me.LoDCheckpoint.from_model(model, torch.zeros(1, 2, 6, 6, dtype=torch.long))   # wrong dtype
    with pytest.raises(MaestroError, match="tensor"):
        me.LoDCheckpoint.from_model(model, ["not a tensor"])


def test_importance_with_a_user_metric():
    torch.manual_seed(0)
    model = FunctionalNet().eval()
    me.factorize_(model)
    x = torch.randn(16, 2, 6, 6)
    reference = model(x).detach()

    def neg_mse(m):
        return -float(F.mse_loss(m(x), reference))

    table = me.importance_table(model, neg_mse, x[:1])
    assert table["metric"] == {"name": "neg_mse", "higher_is_better": True}
    for name, entry in table["layers"].items():
        assert entry["ranks"][-1] == lod_layers(model)[name].active_rank or entry["ranks"][-1] <= lod_layers(model)[name].break_even_rank()
        assert entry["metric_drop"][0] > entry["metric_drop"][-1] - 1e-9   # rank 1 costs most
        assert all(layer.sampled_rank is None for layer in lod_layers(model).values())
    with pytest.raises(MaestroError, match="NaN|nan"):
        me.importance_table(model, lambda m: float("nan"))
    with pytest.raises(MaestroError, match="raised ZeroDivisionError"):
        me.importance_table(model, lambda m: 1 / 0)
