"""LoDLinear / LoDConv2d: SVD init, rank semantics, truncation, conversion, constant-shape masking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from maestro_edge.lod.grid import rank_grid
from maestro_edge.lod.layers import LoDConv2d, LoDLinear, lod_layers, set_constant_shapes


def _linear(in_f=12, out_f=7, bias=True, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias, dtype=dtype)


def _conv(**kw):
    torch.manual_seed(0)
    args = dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1, dilation=1, bias=True)
    args.update(kw)
    return nn.Conv2d(**args)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_linear_reproduces_dense_at_full_rank(bias, dtype):
    dense = _linear(bias=bias, dtype=dtype)
    lod = LoDLinear.from_linear(dense)
    assert lod.max_rank == lod.active_rank == 7 and lod.rank == 7
    assert lod.u.dtype == lod.v.dtype == dtype and lod.u.device == dense.weight.device
    assert (lod.bias is None) == (not bias)
    x = torch.randn(5, 4, 12, dtype=dtype)                       # any leading dims
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(lod(x), dense(x), atol=tol, rtol=tol)


def test_from_linear_keeps_low_precision_dtype():
    dense = _linear(dtype=torch.bfloat16)
    lod = LoDLinear.from_linear(dense)
    assert lod.u.dtype == lod.v.dtype == lod.bias.dtype == torch.bfloat16
    x = torch.randn(3, 12, dtype=torch.bfloat16)
    torch.testing.assert_close(lod(x).float(), dense(x).float(), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("kw", [dict(), dict(stride=1, padding=0, bias=False), dict(dilation=2, padding=2),
                                dict(kernel_size=1, padding=0), dict(padding="same", stride=1),
                                dict(in_channels=1, out_channels=16, kernel_size=5)])
def test_from_conv2d_reproduces_dense_at_full_rank(kw):
    dense = _conv(**kw)
    lod = LoDConv2d.from_conv2d(dense)
    c = dense.weight
    assert lod.max_rank == min(c.shape[0], c[0].numel())
    x = torch.randn(2, dense.in_channels, 11, 11)
    torch.testing.assert_close(lod(x), dense(x), atol=1e-5, rtol=1e-5)
    assert lod.v.dtype == c.dtype and lod.v.device == c.device


def test_from_conv2d_float64_and_max_rank_cap():
    dense = _conv().double()
    lod = LoDConv2d.from_conv2d(dense, max_rank=3)
    assert lod.max_rank == 3 and lod.v.dtype == torch.float64
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    # rank 3 of a balanced SVD = the best rank-3 approximation of the kernel matrix
    p, s, qt = torch.linalg.svd(dense.weight.flatten(1), full_matrices=False)
    best = (p[:, :3] * s[:3]) @ qt[:3]
    expect = F.conv2d(x, best.reshape(dense.weight.shape), dense.bias, 2, 1)
    torch.testing.assert_close(lod(x), expect)


def test_grouped_and_circular_convs_are_refused():
    with pytest.raises(ValueError, match="groups"):
        LoDConv2d.from_conv2d(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match="padding_mode"):
        LoDConv2d.from_conv2d(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular"))


@pytest.mark.parametrize("b", [1, 3, 6])
def test_rank_b_linear_is_the_rank_b_factor_product(b):
    lod = LoDLinear.from_linear(_linear(12, 7))
    x = torch.randn(4, 12)
    lod.sampled_rank = b
    assert lod.rank == b
    expect = x @ (lod.u[:, :b] @ lod.v[:b]).T + lod.bias
    torch.testing.assert_close(lod(x), expect, atol=1e-5, rtol=1e-5)
    lod.sampled_rank = None
    lod.active_rank = b
    torch.testing.assert_close(lod(x), expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("b", [1, 5])
def test_rank_b_conv_is_the_rank_b_factor_product(b):
    dense = _conv()
    lod = LoDConv2d.from_conv2d(dense)
    x = torch.randn(2, 3, 10, 10)
    lod.sampled_rank = b
    weight = (lod.u[:, :b].flatten(1) @ lod.v[:b].flatten(1)).reshape(dense.weight.shape)
    torch.testing.assert_close(lod(x), F.conv2d(x, weight, lod.bias, 2, 1), atol=1e-5, rtol=1e-5)


def test_truncate_slices_in_place():
    lod = LoDConv2d.from_conv2d(_conv())
    x = torch.randn(2, 3, 8, 8)
    lod.sampled_rank = 4
    before = lod(x)
    v4, u4 = lod.v[:4].detach().clone(), lod.u[:, :4].detach().clone()
    assert lod.truncate_(4) is lod
    assert lod.max_rank == lod.active_rank == 4 and lod.sampled_rank is None
    assert lod.v.shape == (4, 3, 3, 3) and lod.u.shape == (8, 4, 1, 1)
    assert torch.equal(lod.v, v4) and torch.equal(lod.u, u4)
    assert isinstance(lod.v, nn.Parameter) and lod.v.is_contiguous() and lod.u.is_contiguous()
    torch.testing.assert_close(lod(x), before)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="rank must be in 1..4"):
            lod.truncate_(bad)


def test_truncate_keeps_a_lower_active_rank():
    lod = LoDLinear.from_linear(_linear())
    lod.active_rank = 2
    lod.truncate_(5)
    assert lod.max_rank == 5 and lod.active_rank == 2


@pytest.mark.parametrize("make", [lambda: LoDLinear.from_linear(_linear()), lambda: LoDConv2d.from_conv2d(_conv())])
def test_to_dense_and_to_sequential_match_forward(make):
    lod = make()
    lod.active_rank = 3
    x = torch.randn(2, 12) if isinstance(lod, LoDLinear) else torch.randn(2, 3, 9, 9)
    expect = lod(x)
    dense, seq = lod.to_dense(), lod.to_sequential()
    assert type(dense) in (nn.Linear, nn.Conv2d)
    assert all(type(m) in (nn.Linear, nn.Conv2d) for m in seq)
    assert seq[0].weight.shape[0] == 3
    torch.testing.assert_close(dense(x), expect, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seq(x), expect, atol=1e-5, rtol=1e-5)


def test_break_even_rank():
    lod = LoDLinear(100, 50, 50)
    assert lod.break_even_rank() == 33          # 100·50 / 150
    conv = LoDConv2d(64, 64, 3, 64)
    assert conv.break_even_rank() == 576 * 64 // 640
    assert conv.factor_macs_per_pixel(conv.break_even_rank()) <= conv.dense_macs_per_pixel()


@pytest.mark.parametrize("make, shape", [(lambda: LoDLinear.from_linear(_linear()), (4, 12)),
                                         (lambda: LoDConv2d.from_conv2d(_conv()), (2, 3, 9, 9))])
def test_constant_shapes_masking_equals_slicing(make, shape):
    sliced, masked = make(), make()
    masked.constant_shapes = True
    x = torch.randn(*shape)
    for layer in (sliced, masked):
        layer.sampled_rank = 3
    out_s, out_m = sliced(x), masked(x)
    torch.testing.assert_close(out_m, out_s, atol=1e-5, rtol=1e-5)
    out_s.square().sum().backward()
    out_m.square().sum().backward()
    torch.testing.assert_close(masked.v.grad, sliced.v.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.u.grad, sliced.u.grad, atol=1e-5, rtol=1e-5)
    assert masked.v.grad[3:].abs().max() == 0 and masked.u.grad[:, 3:].abs().max() == 0
    # at full rank the mask is all ones
    masked.sampled_rank = None
    torch.testing.assert_close(masked(x), make()(x))


def test_the_mask_buffer_follows_the_rank_and_stays_out_of_the_state_dict():
    layer = LoDConv2d.from_conv2d(_conv())                     # max_rank 8
    layer.constant_shapes = True
    assert "live_mask" not in layer.state_dict() and layer.live_mask.tolist() == [1.0] * 8
    layer.sampled_rank = 3
    assert layer.live_mask.tolist() == [1.0] * 3 + [0.0] * 5
    layer.sampled_rank = None
    layer.active_rank = 5                                      # shrinking
    assert layer.live_mask.tolist() == [1.0] * 5 + [0.0] * 3
    layer.truncate_(4)                                         # fewer stored components: a shorter mask
    assert layer.max_rank == 4 and layer.live_mask.tolist() == [1.0] * 4
    layer.constant_shapes = False
    assert "live_mask" not in dict(layer.named_buffers()) and not layer.constant_shapes


def test_set_constant_shapes_and_rank_grid_on_every_layer():
    model = nn.Sequential(LoDConv2d(3, 32, 3, 27), nn.Flatten(), LoDLinear(32, 200, 32), LoDLinear(200, 10, 10))
    set_constant_shapes(model, True)
    assert all(layer.constant_shapes for layer in lod_layers(model).values())
    set_constant_shapes(model, False)
    assert not any(layer.constant_shapes for layer in lod_layers(model).values())
    for layer in lod_layers(model).values():
        grid = rank_grid(layer)
        assert grid == sorted(set(grid)) and 1 <= grid[0] and grid[-1] <= min(layer.active_rank, layer.break_even_rank())


def test_a_new_layer_has_bad_rank_refused():
    with pytest.raises(ValueError, match="max_rank"):
        LoDLinear(4, 4, 0)


@pytest.mark.parametrize("make, shape", [(lambda: LoDLinear.from_linear(_linear(12, 7)), (64, 12)),
                                         (lambda: LoDConv2d.from_conv2d(_conv(in_channels=8, out_channels=16)),
                                          (8, 8, 12, 12))])
@pytest.mark.parametrize("masked", [False, True])
def test_composed_weights_give_the_same_outputs_and_gradients(make, shape, masked):
    factors, composed = make(), make()
    composed.compose_weights = True
    x = torch.randn(*shape)
    for rank in (None, 1, composed.max_rank - 1):
        for layer in (factors, composed):
            layer.sampled_rank, layer.constant_shapes = rank, masked
            layer.zero_grad()
        out_f, out_c = factors(x), composed(x)
        torch.testing.assert_close(out_c, out_f, atol=1e-5, rtol=1e-5)
        out_f.square().sum().backward()
        out_c.square().sum().backward()
        torch.testing.assert_close(composed.u.grad, factors.u.grad, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(composed.v.grad, factors.v.grad, atol=1e-3, rtol=1e-4)


def test_compose_only_where_it_costs_fewer_macs():
    conv = LoDConv2d.from_conv2d(_conv(in_channels=8, out_channels=16, stride=1))     # in 72, out 16, r 16
    conv.compose_weights = True
    positions = 8 * 12 * 12
    assert conv._positions(torch.randn(8, 8, 12, 12)) == positions
    assert conv._compose_pays(positions, 16)                     # full rank: 16·88 > 72·16 per position
    assert not conv._compose_pays(positions, 4)                  # rank 4: the factor pair is cheaper
    assert not conv._compose_pays(1, 16)                         # one position: composing costs more
    conv.constant_shapes = True                                  # masked: the factor pair runs at full rank
    conv.sampled_rank = 4
    assert conv._forward_rank() is None and conv._compose_pays(positions, conv._forward_rank())
    conv.compose_weights = False
    assert not conv._compose_pays(positions, 16)


@pytest.mark.parametrize("make", [lambda: LoDLinear.from_linear(_linear(12, 7)),
                                  lambda: LoDConv2d.from_conv2d(_conv())])
def test_resplit_keeps_the_function_and_orders_components(make):
    layer = make()
    shape = (4, 12) if isinstance(layer, LoDLinear) else (2, 3, 9, 9)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():   # scramble: unordered, unbalanced factors of some product, as training leaves them
        mix = torch.randn(layer.max_rank, layer.max_rank, generator=torch.Generator().manual_seed(2))
        u = layer.u.flatten(1) @ mix
        v = torch.linalg.solve(mix, layer.v.flatten(1))
        layer.u.copy_(u.reshape(layer.u.shape))
        layer.v.copy_(v.reshape(layer.v.shape))
    before = layer(x)
    v_sq, u_sq = layer.resplit_().component_sq_norms()
    assert torch.allclose(layer(x), before, atol=1e-4)
    assert torch.allclose(v_sq, u_sq, rtol=1e-4)                         # balanced: ‖u_k‖ = ‖v_k‖ = √σ_k
    assert bool((v_sq[:-1] >= v_sq[1:] - 1e-6).all())                    # ordered by strength


@pytest.mark.parametrize("make", [lambda: nn.Linear(12, 7), lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1)])
def test_lod_layers_are_drop_in(make):
    """Code written for the dense layer reads .weight, its dtype and device, and the layer's geometry."""
    dense = make()
    lod = (LoDLinear.from_linear if isinstance(dense, nn.Linear) else LoDConv2d.from_conv2d)(dense)
    torch.testing.assert_close(lod.weight, dense.weight, atol=1e-5, rtol=1e-5)
    assert lod.weight.dtype == lod.dtype == torch.float32 and lod.weight.device == lod.device
    for attr in ("in_features", "out_features", "in_channels", "out_channels", "kernel_size", "stride",
                 "padding", "dilation", "groups", "padding_mode"):
        if hasattr(dense, attr):
            assert getattr(lod, attr) == getattr(dense, attr), attr
    lod.active_rank = 2
    assert torch.linalg.matrix_rank(lod.weight.detach().flatten(1)) == 2   # the weight follows the rank
    with pytest.raises((AttributeError, KeyError)):   # nn.Module refuses a parameter over the property
        lod.weight = nn.Parameter(dense.weight)   # read-only: the factors are the parameters


def test_factorized_hf_models_still_run():
    """HF ViT reads projection.weight.dtype; DistilBERT and ViT run after factorize_ with the same outputs."""
    transformers = pytest.importorskip("transformers")
    from maestro_edge.lod.factorize import factorize_

    torch.manual_seed(0)
    vit = transformers.ViTModel(transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                       intermediate_size=64, image_size=32, patch_size=8)).eval()
    bert = transformers.DistilBertModel(transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                                                      vocab_size=100)).eval()
    for model, inputs in ((vit, {"pixel_values": torch.randn(1, 3, 32, 32)}),
                          (bert, {"input_ids": torch.randint(0, 100, (1, 9)), "attention_mask": torch.ones(1, 9, dtype=torch.long)})):
        with torch.no_grad():
            before = model(**inputs).last_hidden_state
            report = factorize_(model)
            assert report.swapped
            after = model(**inputs).last_hidden_state
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
