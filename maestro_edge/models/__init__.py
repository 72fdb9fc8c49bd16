"""Reference architectures by name. Every builder takes ``in_channels`` and ``num_classes``.

Own code, no torchvision. All of them run on 1×28×28 inputs (Fashion-MNIST):

- ``small_cnn``: a small VGG-style CNN (the default model's architecture);
- ``lenet5``: LeNet-5, the paper's MNIST model;
- ``resnet18``: CIFAR-style ResNet-18 (3×3 stem, no max-pool; 11.17M parameters at 3→10);
- ``vgg19_bn``: CIFAR-style VGG-19 with BatchNorm.
"""

from __future__ import annotations

from torch import nn

from maestro_edge.errors import UsageError


def _small_cnn(in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    from maestro_edge.models.small_cnn import SmallCNN

    return SmallCNN(in_channels, num_classes, **kwargs)


def _lenet5(in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    from maestro_edge.models.lenet import LeNet5

    return LeNet5(in_channels, num_classes, **kwargs)


def _resnet18(in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    from maestro_edge.models.resnet import resnet18

    return resnet18(in_channels, num_classes, **kwargs)


def _vgg19_bn(in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    from maestro_edge.models.vgg import vgg19_bn

    return vgg19_bn(in_channels, num_classes, **kwargs)


ARCHITECTURES = {"small_cnn": _small_cnn, "lenet5": _lenet5, "resnet18": _resnet18, "vgg19_bn": _vgg19_bn}


def build_model(arch: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """A freshly initialised dense model of architecture ``arch``."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise UsageError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}") from None
    try:
        return builder(in_channels, num_classes, **kwargs)
    except TypeError as e:
        if "unexpected keyword argument" not in str(e):
            raise
        raise UsageError(f"bad options for architecture '{arch}': {e}") from None
