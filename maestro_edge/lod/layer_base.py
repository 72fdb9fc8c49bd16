"""The base of every LoD layer: an ordered pair of low-rank factors U, V and the ranks that slice them.

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

import torch
from torch import nn


def balanced_svd(matrix: torch.Tensor, max_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``matrix`` (out × in) as U (out × r) · V (r × in), with U = P√Σ and V = √Σ Qᵀ."""
    p, s, qt = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    root = s[:max_rank].sqrt()
    return p[:, :max_rank] * root, root[:, None] * qt[:max_rank]


class LoDLayer(nn.Module):
    """What every LoD layer type subclasses (lod/registry.py registers new ones): ranks, mask, composed weights."""

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

    def resplit_(self) -> "LoDLayer":
        """Re-factorize the active product U·V by balanced SVD: same function, components ordered by σ.

        After full-rank warm-up epochs the factors are neither ordered nor balanced; the SVD puts the
        strongest directions first, where every truncation keeps them (Maestro's dense warm-up + SVD).
        """
        r = self.active_rank
        with torch.no_grad():
            product = self.u[:, :r].flatten(1).double() @ self.v[:r].flatten(1).double()
            k = min(r, *product.shape)   # a rank above min(out, in) adds nothing: those components become 0
            u, v = balanced_svd(product, k)
            self.u[:, :r] = 0
            self.v[:r] = 0
            self.u[:, :k] = u.reshape(self.u[:, :k].shape).to(self.u.dtype)
            self.v[:k] = v.reshape(self.v[:k].shape).to(self.v.dtype)
        return self

    def truncate_(self, rank: int) -> "LoDLayer":
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
