"""Maestro's theory as numbers (maestro.md §3): LoD recovers the SVD and PCA, in order.

Setting: a single LoD layer (all components stored), trained with the real SingleLayerSampler
(rank b uniform over a shuffled cycle) and plain SGD. Without the sampling any rotation of the
factors is optimal, so the components would carry no order; the contrast test shows that.
"""

from __future__ import annotations

import torch
from torch import nn

from maestro_edge.lod.layers import LoDLinear
from maestro_edge.lod.regularize import GroupLasso, component_importance, shrink_
from maestro_edge.train.sampler import SingleLayerSampler


def _train(layer: LoDLinear, batches, target, steps: int, lr: float, lod: bool = True, gl_lambda: float = 0.0):
    model = nn.Sequential(layer)
    with torch.no_grad():                      # start small: the components must grow into place
        layer.u.mul_(0.3)
        layer.v.mul_(0.3)
    sampler = SingleLayerSampler(model, seed=0)
    penalty = GroupLasso(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step in range(steps):
        if step == steps * 3 // 4:             # a smaller step at the end averages the SGD noise out
            for group in opt.param_groups:
                group["lr"] = lr / 10
        if lod:
            sampler.step()
        x = batches()
        loss = (model(x) - target(x)).square().sum(1).mean()
        if gl_lambda:
            loss = loss + gl_lambda * penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sampler.clear()
    return layer


def _alignment(directions: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """|cos| between column k of ``directions`` and column k of ``factor``."""
    return (directions.T @ (factor / factor.norm(dim=0))).diag().abs()


def test_lod_on_a_linear_map_with_isotropic_inputs_recovers_the_svd():
    torch.manual_seed(0)
    m, n = 8, 6
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.5, 1.0, 0.5])
    p, _ = torch.linalg.qr(torch.randn(m, n))
    q, _ = torch.linalg.qr(torch.randn(n, n))
    a = p @ torch.diag(sigma) @ q.T
    g = torch.Generator().manual_seed(1)
    layer = _train(LoDLinear(n, m, n, bias=False), lambda: torch.randn(64, n, generator=g),
                   lambda x: x @ a.T, steps=3000, lr=0.02)
    with torch.no_grad():
        norms = layer.u.norm(dim=0) * layer.v.norm(dim=1)
        assert ((norms - sigma).abs() / sigma).max() < 0.05, norms        # ‖u_k‖‖v_k‖ ≈ σ_k, in order
        assert (norms[:-1] > norms[1:]).all()
        assert _alignment(p, layer.u).min() > 0.98                         # u_k ∥ p_k
        assert _alignment(q, layer.v.T).min() > 0.98                       # v_k ∥ q_k
        for b in range(1, n + 1):                                          # every prefix = truncated SVD
            best = p[:, :b] @ torch.diag(sigma[:b]) @ q[:, :b].T
            err = (layer.u[:, :b] @ layer.v[:b] - best).norm() / best.norm()
            assert err < 0.05, (b, err)


def _anisotropic_data(n=8):
    torch.manual_seed(0)
    variances = torch.tensor([9.0, 6.0, 4.0, 2.5, 1.5, 0.8, 0.4, 0.2])
    rotation, _ = torch.linalg.qr(torch.randn(n, n))
    data = (torch.randn(4096, n) * variances.sqrt()) @ rotation.T
    _, vectors = torch.linalg.eigh(data.T @ data / len(data))
    return data, vectors.flip(1)                     # principal directions, by decreasing variance


def _autoencoder(data, lod: bool):
    g = torch.Generator().manual_seed(1)
    return _train(LoDLinear(8, 8, 4, bias=False), lambda: data[torch.randint(len(data), (64,), generator=g)],
                  lambda x: x, steps=3000, lr=0.01, lod=lod)


def test_lod_linear_autoencoder_recovers_pca_directions_in_order_of_variance():
    data, principal = _anisotropic_data()
    layer = _autoencoder(data, lod=True)
    with torch.no_grad():
        assert _alignment(principal[:, :4], layer.u).min() > 0.98            # decoder column k ∥ k-th PC
        assert _alignment(principal[:, :4], layer.v.T).min() > 0.98          # encoder row k ∥ k-th PC
        norms = layer.u.norm(dim=0) * layer.v.norm(dim=1)                   # u_k v_kᵀ ≈ p_k p_kᵀ
        assert ((norms - 1).abs() < 0.05).all(), norms


def test_without_rank_sampling_the_components_are_not_ordered():
    data, principal = _anisotropic_data()
    layer = _autoencoder(data, lod=False)
    with torch.no_grad():
        assert _alignment(principal[:, :4], layer.u).min() < 0.8             # a rotated basis of the subspace


def test_group_lasso_zeroes_the_null_components_and_shrinking_finds_the_rank():
    torch.manual_seed(0)
    n = 10
    rotation, _ = torch.linalg.qr(torch.randn(n, n))
    variances = torch.tensor([4.0, 2.0, 1.0] + [0.0] * 7)              # data of rank 3 in 10 dimensions
    data = (torch.randn(2048, n) * variances.sqrt()) @ rotation.T
    g = torch.Generator().manual_seed(1)
    layer = _train(LoDLinear(n, n, n, bias=False), lambda: data[torch.randint(len(data), (64,), generator=g)],
                   lambda x: x, steps=2000, lr=0.01, gl_lambda=1e-2)
    importance = component_importance(layer)
    assert (importance[:3] > 0.5).all() and (importance[3:] < 1e-4).all(), importance
    assert shrink_(nn.Sequential(layer), 1e-3) == {"0": (10, 3)}
