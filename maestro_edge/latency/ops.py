"""Compute operators as plain shapes, for latency estimation.

An :class:`OpSpec` is one conv2d (dense, grouped or depthwise) or one linear layer, batch 1, fp32.
It knows its MACs, its output size and how many bytes it must move; ``estimate.py`` turns that into
an estimated time. :func:`low_rank_pair` builds the two ops that replace one layer at a given rank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FP32_BYTES = 4
KINDS = ("conv2d", "linear")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class OpSpec:
    """One conv2d or linear op.

    conv2d: ``in_channels → out_channels`` with ``kernel``, ``stride``, ``padding``, ``groups`` on an
    ``in_hw`` input (batch 1). linear: ``in_channels`` = in_features, ``out_channels`` = out_features,
    applied to ``tokens`` rows (the batch or sequence length); kernel, stride, padding, in_hw unused.
    """

    kind: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    in_hw: tuple[int, int] = (1, 1)
    tokens: int = 1
    bias: bool = True
    name: str = ""

    def __post_init__(self):
        # Accept ints for square kernels/strides/paddings; store tuples so equal ops compare equal.
        for attr in ("kernel", "stride", "padding", "in_hw"):
            object.__setattr__(self, attr, _pair(getattr(self, attr)))
        if self.kind not in KINDS:
            raise ValueError(f"OpSpec kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if min(self.in_channels, self.out_channels, self.groups, self.tokens, *self.kernel, *self.stride, *self.in_hw) < 1:
            raise ValueError(f"OpSpec {self.name or self.kind}: sizes must be >= 1 ({self})")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"OpSpec {self.name or self.kind}: groups={self.groups} must divide both channel counts")
        if self.kind == "linear" and (self.groups != 1 or self.kernel != (1, 1)):
            raise ValueError(f"OpSpec {self.name or 'linear'}: a linear op has no groups or kernel")
        if min(self.out_hw()) < 1:
            raise ValueError(f"OpSpec {self.name or self.kind}: kernel larger than padded input ({self})")

    @classmethod
    def conv2d(cls, in_channels, out_channels, kernel, in_hw, stride=1, padding=None, groups=1, bias=True, name=""):
        """A conv2d; ``padding`` defaults to "same"-style k//2."""
        kernel = _pair(kernel)
        padding = (kernel[0] // 2, kernel[1] // 2) if padding is None else padding
        return cls("conv2d", in_channels, out_channels, kernel, stride, padding, groups, in_hw, bias=bias, name=name)

    @classmethod
    def linear(cls, in_features, out_features, tokens=1, bias=True, name=""):
        return cls("linear", in_features, out_features, tokens=tokens, bias=bias, name=name)

    @property
    def in_features(self) -> int:
        return self.in_channels

    @property
    def out_features(self) -> int:
        return self.out_channels

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv2d" and self.groups > 1 and self.groups == self.in_channels

    def out_hw(self) -> tuple[int, int]:
        """Output height and width; a linear op has no spatial size, so (1, 1)."""
        if self.kind == "linear":
            return (1, 1)
        return tuple(
            (size + 2 * pad - k) // s + 1
            for size, pad, k, s in zip(self.in_hw, self.padding, self.kernel, self.stride)
        )

    def gemm_shape(self) -> tuple[int, int, int]:
        """(M, N, K) of the matrix multiply each group performs: rows, output columns, reduction length.

        A conv is an implicit GEMM: M = output pixels, N = out channels per group,
        K = in channels per group x kernel area. A linear op: M = tokens, N = out, K = in.
        """
        if self.kind == "linear":
            return self.tokens, self.out_channels, self.in_channels
        oh, ow = self.out_hw()
        kh, kw = self.kernel
        return oh * ow, self.out_channels // self.groups, self.in_channels // self.groups * kh * kw

    def macs(self) -> int:
        m, n, k = self.gemm_shape()
        return m * n * k * self.groups

    def weight_bytes(self) -> int:
        _, n, k = self.gemm_shape()
        return FP32_BYTES * (n * k * self.groups + (self.out_channels if self.bias else 0))

    def activation_bytes(self) -> int:
        """Bytes of input plus output activations (each read or written once)."""
        if self.kind == "linear":
            return FP32_BYTES * self.tokens * (self.in_channels + self.out_channels)
        (h, w), (oh, ow) = self.in_hw, self.out_hw()
        return FP32_BYTES * (h * w * self.in_channels + oh * ow * self.out_channels)


def low_rank_pair(op: OpSpec, rank: int) -> tuple[OpSpec, OpSpec]:
    """The two ops replacing ``op`` at ``rank``: k x k conv C_in → r then 1x1 conv r → C_out
    (same stride and padding on the first), or Linear n → r then r → m. The first has no bias."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    if op.groups != 1:
        raise ValueError(f"{op.name or 'op'}: low-rank factorisation of a grouped conv is not supported")
    first = replace(op, out_channels=rank, bias=False, name=f"{op.name}.0" if op.name else "")
    if op.kind == "linear":
        second = OpSpec.linear(rank, op.out_channels, tokens=op.tokens, bias=op.bias)
    else:
        second = OpSpec.conv2d(rank, op.out_channels, 1, first.out_hw(), bias=op.bias)
    return first, replace(second, name=f"{op.name}.1" if op.name else "")
