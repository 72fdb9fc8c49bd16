"""LoD layers: a Linear or Conv2d as an ordered pair of low-rank factors.

``LoDLinear`` computes ``x -> U (V x) + bias`` and ``LoDConv2d`` computes a k×k conv C_in→r (the
original stride/padding/dilation, no bias) followed by a 1×1 conv r→C_out (with the bias). Component k
is row k of V and column k of U. LoD training makes the components ordered, so the first ``r`` of them
form a good rank-``r`` layer for every ``r``.

The rank machinery they share (three ranks, constant shapes, composed weights) is lod/layer_base.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.lod import layer_base
from maestro_edge.lod.layer_base import LoDLayer


class LoDLinear(LoDLayer):
    """``y = U (V x) + bias`` with V: r × in and U: out × r."""

    kind = "linear"

    def __init__(self, in_features: int, out_features: int, max_rank: int, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.v = nn.Parameter(torch.empty(max_rank, in_features, **kw))
        self.u = nn.Parameter(torch.empty(out_features, max_rank, **kw))
        self.bias = nn.Parameter(torch.zeros(out_features, **kw)) if bias else None
        self._init_ranks(max_rank)
        nn.init.kaiming_uniform_(self.v, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))

    in_dim = property(lambda self: self.in_features)
    out_dim = property(lambda self: self.out_features)

    def config(self) -> dict:
        """Plain constructor arguments (JSON): with ``from_config`` rebuilds the layer without user code."""
        return {"kind": self.kind, "in_features": self.in_features, "out_features": self.out_features,
                "max_rank": self.max_rank, "bias": self.bias is not None}

    @classmethod
    def from_config(cls, config: dict) -> "LoDLinear":
        return cls(config["in_features"], config["out_features"], config["max_rank"], config["bias"])

    @classmethod
    def from_linear(cls, layer: nn.Linear, max_rank: int | None = None, svd_init: bool = True) -> "LoDLinear":
        """Factorize ``layer`` by balanced SVD; at full rank the output equals the dense layer's.

        svd_init=False: the same shapes without the SVD (for weights about to be loaded from a checkpoint).
        """
        weight = layer.weight
        full = min(weight.shape)
        rank = full if max_rank is None else min(max_rank, full)
        new = cls(layer.in_features, layer.out_features, rank, layer.bias is not None,
                  device=weight.device, dtype=weight.dtype)
        if not svd_init:
            return new
        u, v = layer_base.balanced_svd(weight, rank)
        with torch.no_grad():
            new.u.copy_(u)
            new.v.copy_(v)
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self._forward_rank()
        if self.compose_weights and self._compose_pays(x.numel() // self.in_features, r):
            return F.linear(x, self._composed_weight(r), self.bias)
        u, v = self._factors(r)
        return F.linear(F.linear(x, v), u, self.bias)

    def to_dense(self) -> nn.Linear:
        """The product of the active components as one nn.Linear."""
        r = self.active_rank
        dense = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                          device=self.v.device, dtype=self.v.dtype)
        with torch.no_grad():
            dense.weight.copy_(self.u[:, :r] @ self.v[:r])
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    def to_sequential(self) -> nn.Sequential:
        """The active components as two plain nn.Linear layers (the form exporters understand)."""
        r = self.active_rank
        first = nn.Linear(self.in_features, r, bias=False, device=self.v.device, dtype=self.v.dtype)
        second = nn.Linear(r, self.out_features, self.bias is not None, device=self.v.device, dtype=self.v.dtype)
        return self._filled_pair(first, second)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"max_rank={self.max_rank}, active_rank={self.active_rank}, bias={self.bias is not None}")


class LoDConv2d(LoDLayer):
    """k×k conv C_in→r (no bias) then 1×1 conv r→C_out (bias); V: r×C_in×k×k, U: C_out×r×1×1."""

    kind = "conv2d"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, max_rank: int, stride=1,
                 padding=0, dilation=1, bias: bool = True, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = nn.modules.utils._pair(kernel_size)
        self.stride = nn.modules.utils._pair(stride)
        self.padding = padding if isinstance(padding, str) else nn.modules.utils._pair(padding)
        self.dilation = nn.modules.utils._pair(dilation)
        # Read by code written for nn.Conv2d; only the plain case is factorized.
        self.groups, self.padding_mode, self.transposed, self.output_padding = 1, "zeros", False, (0, 0)
        self.v = nn.Parameter(torch.empty(max_rank, in_channels, *self.kernel_size, **kw))
        self.u = nn.Parameter(torch.empty(out_channels, max_rank, 1, 1, **kw))
        self.bias = nn.Parameter(torch.zeros(out_channels, **kw)) if bias else None
        self._init_ranks(max_rank)
        nn.init.kaiming_uniform_(self.v, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))

    in_dim = property(lambda self: self.in_channels * self.kernel_size[0] * self.kernel_size[1])
    out_dim = property(lambda self: self.out_channels)

    def config(self) -> dict:
        """Plain constructor arguments (JSON): with ``from_config`` rebuilds the layer without user code."""
        return {"kind": self.kind, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "max_rank": self.max_rank, "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "dilation": list(self.dilation), "bias": self.bias is not None}

    @classmethod
    def from_config(cls, config: dict) -> "LoDConv2d":
        c = config
        return cls(c["in_channels"], c["out_channels"], tuple(c["kernel_size"]), c["max_rank"], tuple(c["stride"]),
                   c["padding"] if isinstance(c["padding"], str) else tuple(c["padding"]), tuple(c["dilation"]),
                   c["bias"])

    @classmethod
    def from_conv2d(cls, layer: nn.Conv2d, max_rank: int | None = None, svd_init: bool = True) -> "LoDConv2d":
        """Factorize ``layer`` (groups must be 1) by balanced SVD of its C_out × (C_in·k·k) matrix.

        svd_init=False: the same shapes without the SVD (for weights about to be loaded from a checkpoint).
        """
        if layer.groups != 1:
            raise ValueError("grouped/depthwise convolutions cannot be factorized (groups != 1)")
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported (only 'zeros')")
        weight = layer.weight
        full = min(weight.shape[0], weight[0].numel())
        rank = full if max_rank is None else min(max_rank, full)
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, rank, layer.stride,
                  layer.padding, layer.dilation, layer.bias is not None,
                  device=weight.device, dtype=weight.dtype)
        if not svd_init:
            return new
        u, v = layer_base.balanced_svd(weight.flatten(1), rank)
        with torch.no_grad():
            new.u.copy_(u[:, :, None, None])
            new.v.copy_(v.reshape(new.v.shape))
            if layer.bias is not None:
                new.bias.copy_(layer.bias)
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self._forward_rank()
        if self.compose_weights and self._compose_pays(self._positions(x), r):
            return F.conv2d(x, self._composed_weight(r), self.bias, self.stride, self.padding, self.dilation)
        u, v = self._factors(r)
        return F.conv2d(F.conv2d(x, v, None, self.stride, self.padding, self.dilation), u, self.bias)

    def _positions(self, x: torch.Tensor) -> int:
        """Output positions (batch × output pixels), estimated as input pixels / stride²."""
        batch = x.numel() // (self.in_channels * x.shape[-1] * x.shape[-2])
        return batch * (x.shape[-2] // self.stride[0]) * (x.shape[-1] // self.stride[1])

    def to_dense(self) -> nn.Conv2d:
        """The product of the active components as one nn.Conv2d."""
        r = self.active_rank
        dense = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                          self.padding, self.dilation, bias=self.bias is not None,
                          device=self.v.device, dtype=self.v.dtype)
        with torch.no_grad():
            weight = self.u[:, :r].flatten(1) @ self.v[:r].flatten(1)
            dense.weight.copy_(weight.reshape(dense.weight.shape))
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        return dense

    def to_sequential(self) -> nn.Sequential:
        """The active components as a k×k nn.Conv2d then a 1×1 nn.Conv2d (the form exporters understand)."""
        r = self.active_rank
        kw = dict(device=self.v.device, dtype=self.v.dtype)
        first = nn.Conv2d(self.in_channels, r, self.kernel_size, self.stride, self.padding, self.dilation,
                          bias=False, **kw)
        second = nn.Conv2d(r, self.out_channels, 1, bias=self.bias is not None, **kw)
        return self._filled_pair(first, second)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, max_rank={self.max_rank}, "
                f"active_rank={self.active_rank}, bias={self.bias is not None}")


# LoD layer kind -> class: how a saved layer config is rebuilt (lod/registry.register_layer adds to it).
LOD_LAYER_TYPES: dict[str, type[LoDLayer]] = {cls.kind: cls for cls in (LoDLinear, LoDConv2d)}


def lod_layers(model: nn.Module) -> dict[str, LoDLayer]:
    """The model's LoD layers by module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoDLayer)}


def set_constant_shapes(model: nn.Module, enabled: bool = True) -> None:
    """Make every LoD layer mask (``enabled``) or slice (the default) components beyond its rank."""
    for layer in lod_layers(model).values():
        layer.constant_shapes = enabled


def set_compose_weights(model: nn.Module, enabled: bool = True) -> None:
    """Let every LoD layer run as one dense op on U_r V_r where that is cheaper (``enabled``)."""
    for layer in lod_layers(model).values():
        layer.compose_weights = enabled
