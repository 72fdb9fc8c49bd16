"""A new layer type is one registration: factorize_, lod_layers, the estimator, MAC counting and the saved
checkpoint all follow it, with no change to maestro_edge/ (issue 13)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.estimated import estimate_layer_ms
from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.layers import LOD_LAYER_TYPES, LoDLinear, lod_layers
from maestro_edge.lod import registry
from maestro_edge.lod.registry import register_layer


class GatedLinear(nn.Linear):
    """A user's own Linear subclass: left dense unless registered (a parent might read its .weight)."""


class LoDGatedLinear(LoDLinear):
    kind = "gated_linear"


def model():
    torch.manual_seed(0)
    return nn.Sequential(GatedLinear(256, 384), nn.ReLU(), nn.Linear(384, 10))


@pytest.fixture
def registered():
    register_layer(GatedLinear, LoDGatedLinear, LoDGatedLinear.from_linear)
    yield
    registry._HANDLERS.pop(GatedLinear)
    LOD_LAYER_TYPES.pop(LoDGatedLinear.kind)


def test_an_unregistered_subclass_stays_dense_and_is_reported():
    report = factorize_(model())
    assert "0" in report.skipped and "subclass" in report.skipped["0"] and list(report.swapped) == ["2"]


def test_a_registered_type_is_factorized_estimated_and_saved(registered, tmp_path):
    import maestro_edge as me

    net = model()
    x = torch.randn(1, 256)
    dense_out = net(x)
    report = factorize_(net)
    assert set(report.swapped) == {"0", "2"} and isinstance(net[0], LoDGatedLinear)
    assert torch.allclose(net(x), dense_out, atol=1e-5)                  # exact at full rank
    assert set(lod_layers(net)) == {"0", "2"}
    # the estimator takes it as the Linear it subclasses; fewer ranks cost less
    pixel7 = find_profile("pixel7")
    tokens = (1, 128, 256)   # a sequence: enough work that the factor pair's extra op does not dominate
    assert 0 < estimate_layer_ms(pixel7, net[0], tokens, 4) < estimate_layer_ms(pixel7, net[0], tokens, "dense")
    # a saved checkpoint rebuilds it as its own type, with no user code in the file
    table = me.importance_table(net, lambda m: float(-m(x).square().mean()), x)
    path = tmp_path / "gated.lod"
    me.LoDCheckpoint.from_model(net, x, importance=table).save(path)
    loaded = me.LoDCheckpoint.load(path)
    assert type(lod_layers(loaded.model)["0"]) is LoDGatedLinear
    assert torch.allclose(loaded.model(x), net.eval()(x), atol=1e-5)


def test_registering_something_that_is_not_a_lod_layer_is_refused():
    with pytest.raises(TypeError, match="not a LoD layer type"):
        register_layer(GatedLinear, nn.Linear, LoDLinear.from_linear)
