"""Reference architectures by name. Every builder takes ``in_channels`` and ``num_classes``."""

from __future__ import annotations

from torch import nn

from maestro_edge.errors import UsageError


def _small_cnn(in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    from maestro_edge.models.small_cnn import SmallCNN

    return SmallCNN(in_channels, num_classes, **kwargs)


ARCHITECTURES = {"small_cnn": _small_cnn}


def build_model(arch: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """A freshly initialised dense model of architecture ``arch``."""
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise UsageError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}") from None
    return builder(in_channels, num_classes, **kwargs)
