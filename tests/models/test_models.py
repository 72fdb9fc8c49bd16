"""Reference architectures: parameter counts, 1×28×28 inputs, factorization, the registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from maestro_edge.errors import UsageError
from maestro_edge.lod.factorize import factorize_
from maestro_edge.models import ARCHITECTURES, build_model


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_paper_models():
    assert {"small_cnn", "lenet5", "resnet18", "vgg19_bn"} <= set(ARCHITECTURES)


def test_cifar_resnet18_has_11_17m_parameters():
    model = build_model("resnet18", 3, 10)
    assert _count(model) == 11_173_962
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_vgg19_bn_has_sixteen_convs_and_20m_parameters():
    model = build_model("vgg19_bn", 3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 16 and sum(c.weight.numel() for c in convs) == 20_018_880
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 16
    assert _count(model) == 20_035_018


def test_lenet5_parameters():
    assert _count(build_model("lenet5", 1, 10)) == 61_706


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("in_channels, classes", [(1, 10), (3, 7)])
def test_every_model_runs_on_28x28_and_factorizes(arch, in_channels, classes):
    torch.manual_seed(0)
    kwargs = {"width": 8} if arch == "resnet18" else {"width_mult": 0.125} if arch == "vgg19_bn" else {}
    model = build_model(arch, in_channels, classes, **kwargs).eval()
    x = torch.randn(2, in_channels, 28, 28)
    expect = model(x)
    assert expect.shape == (2, classes)
    report = factorize_(model)
    assert report.swapped and not report.skipped
    torch.testing.assert_close(model(x), expect, atol=1e-4, rtol=1e-4)


def test_small_inputs_pass_through_the_cnns():
    for arch in ("small_cnn", "resnet18", "vgg19_bn"):
        kwargs = {"width": 8} if arch == "resnet18" else {"width_mult": 0.125} if arch == "vgg19_bn" else {}
        assert build_model(arch, 1, 10, **kwargs).eval()(torch.randn(1, 1, 8, 8)).shape == (1, 10)
    assert build_model("lenet5", 3, 10).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_architecture_and_options_are_usage_errors():
    with pytest.raises(UsageError, match="unknown architecture 'resnet50'; choose one of"):
        build_model("resnet50", 1, 10)
    with pytest.raises(UsageError, match="bad options for architecture 'lenet5'"):
        build_model("lenet5", 1, 10, depth=3)
