"""Hierarchical group lasso (loop and fused), importance, progressive shrinking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maestro_edge.lod.factorize import factorize_
from maestro_edge.lod.layers import LoDConv2d, LoDLinear, lod_layers
from maestro_edge.lod.regularize import GroupLasso, component_importance, group_lasso, shrink_
from maestro_edge.models import build_model


def _model():
    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 10, widths=(8, 16, 24), hidden=12)
    factorize_(model)
    return model


def test_hgl_formula_on_a_hand_made_layer():
    layer = LoDLinear(2, 3, 2, bias=False)
    with torch.no_grad():
        layer.v.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0]]))               # row norms 5, 1
        layer.u.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))   # column norms 1, 2
    model = nn.Sequential(layer)
    expect = (26 ** 0.5 + 1.0) + (5 ** 0.5 + 2.0)      # Σ_b ‖V[b:]‖ + Σ_b ‖U[:, b:]‖
    assert group_lasso(model, fused=False).item() == pytest.approx(expect, rel=1e-6)
    assert group_lasso(model).item() == pytest.approx(expect, rel=1e-6)
    assert component_importance(layer).tolist() == pytest.approx([26 ** 0.5 * 5 ** 0.5, 2.0], rel=1e-6)


def test_fused_penalty_equals_the_loop_in_value_and_gradient():
    model = _model()
    lod_layers(model)["features.1.0"].truncate_(5)      # rows of different lengths in the padded layout
    params = [p for p in model.parameters()]
    loop = group_lasso(model, fused=False)
    fused = GroupLasso(model)()
    torch.testing.assert_close(fused, loop, rtol=1e-6, atol=1e-4)
    g_loop = torch.autograd.grad(loop, params, allow_unused=True)
    g_fused = torch.autograd.grad(fused, params, allow_unused=True)
    for a, b in zip(g_loop, g_fused):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_fused_penalty_follows_truncation_and_dtype():
    model = _model()
    penalty = GroupLasso(model)
    first = penalty()
    lod_layers(model)["classifier.1"].truncate_(3)
    torch.testing.assert_close(penalty(), group_lasso(model, fused=False), rtol=1e-6, atol=1e-4)
    assert penalty() < first
    model.double()
    assert penalty().dtype == torch.float64
    assert GroupLasso(nn.Sequential(nn.Linear(2, 2)))().item() == 0.0


def test_penalty_gradient_is_finite_at_zero_components():
    layer = LoDConv2d(2, 4, 3, 4)
    with torch.no_grad():
        layer.v[2:].zero_()
        layer.u[:, 2:].zero_()
    penalty = GroupLasso(nn.Sequential(layer))()
    penalty.backward()
    assert torch.isfinite(layer.v.grad).all() and torch.isfinite(layer.u.grad).all()


def test_shrink_keeps_the_prefix_above_the_threshold_and_never_below_rank_1():
    layer = LoDLinear(4, 4, 4, bias=False)
    with torch.no_grad():
        layer.v.copy_(torch.diag(torch.tensor([1.0, 1e-2, 1e-5, 1e-6])))
        layer.u.copy_(torch.eye(4))
    model = nn.Sequential(layer, LoDLinear(4, 2, 2))
    importance = component_importance(layer)
    assert (importance[:-1] >= importance[1:]).all()          # tail products never increase
    assert shrink_(model, 1e-4) == {"0": (4, 2)}
    assert layer.active_rank == 2 and layer.max_rank == 4      # masked, not removed
    assert shrink_(model, 1e-4) == {}
    assert shrink_(model, 1e9) == {"0": (2, 1), "1": (2, 1)}
    assert layer.active_rank == 1
