"""LoD layers: a Linear or Conv2d as an ordered pair of low-rank factors.

``LoDLinear`` computes ``x -> U (V x) + bias`` and ``LoDConv2d`` computes a k×k conv C_in→r (the
original stride/padding/dilation, no bias) followed by a 1×1 conv r→C_out (with the bias). Component k
is row k of V and column k of U. LoD training makes the components ordered, so the first ``r`` of them
form a good rank-``r`` layer for every ``r``.

Three ranks matter:
- ``max_rank``: how many components are stored;
- ``active_rank``: the prefix kept by progressive shrinking (persistent, saved in checkpoints);
- ``sampled_rank``: a one-step override set by the rank sampler during training (None = active rank).

Training can ask for constant shapes (``set_constant_shapes(model, True)``): a layer then always
multiplies U's columns by a 0/1 mask (a buffer, updated in place when the rank changes) instead of
slicing the factors. The output and the gradients are the same as with slicing (masked components get
zero gradient from the loss), but every step runs the same kernels on the same shapes and the forward
pass never reads a rank from Python: what cuDNN autotuning, ``torch.compile`` and CUDA graphs need.

Training can also ask for composed weights (``set_compose_weights(model, True)``): where it costs
fewer multiply-adds for the batch at hand (high ranks, large batches), a layer multiplies its factors
into one dense weight ``U[:, :r] V[:r]`` and runs a single dense Linear/Conv2d. Same function and
same gradients (the chain rule through the product), so a full-rank LoD step costs about what a
dense step costs; low ranks keep the cheaper two-factor path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _balanced_svd(matrix: torch.Tensor, max_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``matrix`` (out × in) as U (out × r) · V (r × in), with U = P√Σ and V = √Σ Qᵀ."""
    p, s, qt = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:max_rank].sqrt()
    return p[:, :max_rank] * root, root[:, None] * qt[:max_rank]


class _LoDBase(nn.Module):
    u: nn.Parameter
    v: nn.Parameter

    def _init_ranks(self, max_rank: int) -> None:
        if max_rank < 1:
            raise ValueError(f"max_rank must be >= 1, got {max_rank}")
        self._active_rank = max_rank
        self._sampled_rank: int | None = None
        self._mask_rank = 0          # the rank the mask buffer holds (constant shapes only)
        self.compose_weights = False

    # Setting a rank updates the mask buffer (when there is one) at once, outside any forward pass.
    @property
    def active_rank(self) -> int:
        return self._active_rank

    @active_rank.setter
    def active_rank(self, rank: int) -> None:
        self._active_rank = rank
        self._sync_mask()

    @property
    def sampled_rank(self) -> int | None:
        return self._sampled_rank

    @sampled_rank.setter
    def sampled_rank(self, rank: int | None) -> None:
        self._sampled_rank = rank
        self._sync_mask()

    @property
    def constant_shapes(self) -> bool:
        return "live_mask" in self._buffers

    @constant_shapes.setter
    def constant_shapes(self, enabled: bool) -> None:
        self._buffers.pop("live_mask", None)
        if enabled:
            self.register_buffer("live_mask", self.rank_mask(self.rank).clone(), persistent=False)
            self._mask_rank = self.rank

    def _sync_mask(self) -> None:
        """One small copy when the rank really changed (the sampler resets every layer every step)."""
        mask = self._buffers.get("live_mask")
        if mask is not None and self._mask_rank != self.rank:
            with torch.no_grad():
                mask.copy_(self.rank_mask(self.rank))
            self._mask_rank = self.rank

    @property
    def max_rank(self) -> int:
        return self.v.shape[0]

    @property
    def rank(self) -> int:
        """The rank the next forward pass uses."""
        return self.sampled_rank if self.sampled_rank is not None else self.active_rank

    def rank_mask(self, rank: int) -> torch.Tensor:
        """1 for the first ``rank`` components, 0 after (length max_rank, U's dtype and device).

        Cached per (rank, device, dtype), so a rank change costs one copy into the mask buffer.
        """
        key = (rank, self.max_rank, self.u.device, self.u.dtype)
        cache = self.__dict__.setdefault("_rank_masks", {})
        if key not in cache:
            cache[key] = (torch.arange(self.max_rank, device=self.u.device) < rank).to(self.u.dtype)
        return cache[key]

    def _forward_rank(self) -> int | None:
        """The rank to slice to, or None under constant shapes (the mask buffer holds the rank)."""
        return None if self.constant_shapes else self.rank

    def _factors(self, rank: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, V) as the forward pass uses them: masked at full size (rank None), or sliced to ``rank``."""
        if rank is None:
            return self.u * self.live_mask.reshape(-1, *([1] * (self.u.ndim - 2))), self.v
        return self.u[:, :rank], self.v[:rank]

    def _composed_weight(self, rank: int | None) -> torch.Tensor:
        """U_r V_r as one dense weight of the original layer's shape."""
        u, v = self._factors(rank)
        return (u.flatten(1) @ v.flatten(1)).reshape(self.out_dim, *self.v.shape[1:])

    def _compose_pays(self, positions: int, rank: int | None) -> bool:
        """True when one dense op on the composed weight costs fewer MACs than the two factors.

        ``positions``: how many output vectors the layer computes (batch × pixels). Composing costs
        rank·in·out once; the factor pair costs rank·(in + out) per position, the dense op in·out.
        """
        if not self.compose_weights:
            return False
        cost_rank = self.max_rank if rank is None else rank
        dense = self.in_dim * self.out_dim
        return dense * positions + cost_rank * dense < cost_rank * (self.in_dim + self.out_dim) * positions

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight U_r V_r at the current rank, so code that reads ``layer.weight`` (its dtype,
        device or shape, as HF models do) keeps working. Read-only: the factors are the parameters."""
        return self._composed_weight(self._forward_rank())

    @property
    def dtype(self) -> torch.dtype:
        return self.u.dtype

    @property
    def device(self) -> torch.device:
        return self.u.device

    def component_sq_norms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared norm of each component in V and in U (length max_rank each)."""
        return self.v.flatten(1).pow(2).sum(1), self.u.flatten(1).pow(2).sum(0)

    def _filled_pair(self, first: nn.Module, second: nn.Module) -> nn.Sequential:
        """``first`` gets V's active rows, ``second`` U's active columns and the bias (shapes already match)."""
        r = self.active_rank
        with torch.no_grad():
            first.weight.copy_(self.v[:r])
            second.weight.copy_(self.u[:, :r])
            if self.bias is not None:
                second.bias.copy_(self.bias)
        return nn.Sequential(first, second)

    def resplit_(self) -> "_LoDBase":
        """Re-factorize the active product U·V by balanced SVD: same function, components ordered by σ.

        After full-rank warm-up epochs the factors are neither ordered nor balanced; the SVD puts the
        strongest directions first, where every truncation keeps them (Maestro's dense warm-up + SVD).
        """
        r = self.active_rank
        with torch.no_grad():
            product = self.u[:, :r].flatten(1).double() @ self.v[:r].flatten(1).double()
            k = min(r, *product.shape)   # a rank above min(out, in) adds nothing: those components become 0
            u, v = _balanced_svd(product, k)
            self.u[:, :r] = 0
            self.v[:r] = 0
            self.u[:, :k] = u.reshape(self.u[:, :k].shape).to(self.u.dtype)
            self.v[:k] = v.reshape(self.v[:k].shape).to(self.v.dtype)
        return self

    def truncate_(self, rank: int) -> "_LoDBase":
        """Keep only the first ``rank`` components, physically (in place)."""
        if not 1 <= rank <= self.max_rank:
            raise ValueError(f"rank must be in 1..{self.max_rank}, got {rank}")
        with torch.no_grad():
            self.v = nn.Parameter(self.v[:rank].clone())
            self.u = nn.Parameter(self.u[:, :rank].clone())
        masked = self.constant_shapes
        self.constant_shapes = False     # the mask has the old length
        self.active_rank = min(self.active_rank, rank)
        self.sampled_rank = None
        self.constant_shapes = masked
        return self

    def dense_macs_per_pixel(self) -> int:
        return self.out_dim * self.in_dim

    def factor_macs_per_pixel(self, rank: int) -> int:
        return rank * (self.in_dim + self.out_dim)

    def break_even_rank(self) -> int:
        """Rank where the factor pair has as many MACs as the dense layer (above it, dense wins)."""
        return (self.out_dim * self.in_dim) // (self.in_dim + self.out_dim)


class LoDLinear(_LoDBase):
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
        u, v = _balanced_svd(weight, rank)
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


class LoDConv2d(_LoDBase):
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
        u, v = _balanced_svd(weight.flatten(1), rank)
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


LoDLayer = _LoDBase   # what every LoD layer type subclasses (lod/registry.py registers new ones)
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
