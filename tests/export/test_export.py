"""Exports run in their real runtimes and match eager PyTorch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maestro_edge.errors import ExportError, UsageError
from maestro_edge.export.bundle import bundle_pte, check_bundle
from maestro_edge.export.onnx_export import export_onnx_bytes
from maestro_edge.export.pte import lower_to_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.export.verify import ATOL, compare_onnx, compare_pte
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers


@pytest.fixture(scope="module")
def small_model(tiny_checkpoint):
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    layers = lod_layers(ckpt.model)
    names = list(layers)
    choices = {names[0]: "dense", names[1]: max(1, layers[names[1]].active_rank // 2), names[-2]: 4}
    return ckpt, deployable(ckpt.model, choices)


def test_deployable_is_plain_pytorch_and_truncates(small_model):
    ckpt, small = small_model
    assert not lod_layers(small)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in ckpt.model.parameters())


def test_pte_and_onnx_match_eager(small_model):
    ckpt, small = small_model
    inputs = torch.randn(8, *ckpt.input_shape[1:], generator=torch.Generator().manual_seed(0))
    example = (torch.zeros(ckpt.input_shape),)
    assert compare_pte(lower_to_pte(small, example), small, inputs) <= ATOL
    assert compare_onnx(export_onnx_bytes(small, example), small, inputs) <= ATOL


def test_bundled_program_checks_itself(small_model):
    ckpt, small = small_model
    inputs = torch.randn(3, *ckpt.input_shape[1:], generator=torch.Generator().manual_seed(1))
    pte = lower_to_pte(small, (torch.zeros(ckpt.input_shape),))
    assert check_bundle(bundle_pte(pte, small, inputs))["cases"] == 3
    # expected outputs from another model: the runtime's own verifier must reject the bundle
    shifted = nn.Sequential(small, _AddConstant(0.1)).eval()
    with pytest.raises(ExportError, match="case 0 of the bundled program differs"):
        check_bundle(bundle_pte(pte, shifted, inputs))


class _AddConstant(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x + self.value


def test_mismatch_is_caught(small_model):
    ckpt, small = small_model
    other = deployable(ckpt.model, {})
    example = (torch.zeros(ckpt.input_shape),)
    with pytest.raises(ExportError, match="differs from PyTorch"):
        compare_onnx(export_onnx_bytes(other, example), small, torch.randn(4, *ckpt.input_shape[1:]))


class Undelegatable(nn.Module):
    def forward(self, x):
        return torch.cumsum(x, dim=-1)


def test_undelegated_ops_fail_loudly():
    with pytest.raises(ExportError, match="XNNPACK did not take"):
        lower_to_pte(Undelegatable(), (torch.zeros(1, 8),))


def test_plan_for_another_model_is_refused(small_model):
    ckpt, _ = small_model
    with pytest.raises(UsageError, match="does not have"):
        deployable(ckpt.model, {"encoder.layer.0.attention": 8})
    with pytest.raises(UsageError, match="not in 1.."):
        deployable(ckpt.model, {next(iter(lod_layers(ckpt.model))): 10_000})
