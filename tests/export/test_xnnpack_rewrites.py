"""The XNNPACK rewrites: exact in the ExecuTorch runtime, delegated, and only where their preconditions hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.export.pte import export_pte
from maestro_edge.export.verify import ATOL, compare_pte
from maestro_edge.export.xnnpack_rewrites import rewrite_for_xnnpack


class Op(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def run_pte(buffer: bytes, x: torch.Tensor) -> torch.Tensor:
    with quiet():
        from executorch.runtime import Runtime

        return Runtime.get().load_program(buffer).load_method("forward").execute((x,))[0]


# Each draws an op from hypothesis data and the input's shape.
def _mean(data, shape):
    dims = data.draw(st.sampled_from([(2, 3), (3, 2), (-1, -2), (-2, 3)]))
    return lambda x: x.mean(dim=dims)


def _amax(data, shape):
    dims = data.draw(st.sampled_from([(2, 3), (-1, -2), (3,), (2,), -1]))
    keepdim = data.draw(st.booleans())
    return lambda x: x.amax(dim=dims, keepdim=keepdim)


def _repeat_interleave(data, shape):
    repeats, dim = data.draw(st.integers(2, 7)), data.draw(st.integers(-4, 3))   # > 5: XNNPACK splits the cat
    return lambda x: (x * 2).repeat_interleave(repeats, dim=dim)


def _alias(data, shape):   # a slice keeping everything, as TwoBranchNet's side[..., :H, :W]
    return lambda x: (x * 2)[..., : shape[2], : shape[3]] + 1


# name -> (op drawer, bitwise exact: a mean may sum in another order)
OPS = {"mean": (_mean, False), "amax": (_amax, True), "repeat_interleave": (_repeat_interleave, True),
       "alias": (_alias, True)}


@pytest.mark.parametrize("name", list(OPS))
@settings(max_examples=6, deadline=None)
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(2, 9), st.integers(2, 9)), data=st.data())
def test_rewrite_is_exact_and_delegated(name, shape, data):
    draw, exact = OPS[name]
    module = Op(draw(data, shape)).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
    export = export_pte(module, (x,))
    assert export.delegation()["fully_delegated"] and export.delegate_calls == 1, export.delegation()
    got, want = run_pte(export.buffer, x), module(x)
    assert got.shape == want.shape
    if exact:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fn", [
    lambda x: x.mean(dim=1),                                # not the spatial dims
    lambda x: x.mean(dim=(2, 3), keepdim=True),             # already what XNNPACK takes
    lambda x: x.mean(dim=(2, 3), dtype=torch.float64),      # a dtype override
    lambda x: x[0].mean(dim=(1, 2)),                        # 3-D
    lambda x: x.amax(dim=(1, 2)),                           # not only the spatial dims
    lambda x: x[..., :1, :1].amax(dim=(2, 3)),              # a 1 x 1 window: XNNPACK's max pool refuses it
    lambda x: x.long().amax(dim=(2, 3)),                    # not float32
    lambda x: x.repeat_interleave(torch.tensor([1, 2, 1, 2, 1]), dim=-1),  # per-element repeats
    lambda x: x.repeat_interleave(1, dim=-1),               # repeats 1
    lambda x: x.repeat_interleave(2),                       # no dim: flattens
    lambda x: x[..., :5, :5],                               # an alias that is the program's output
])
def test_failed_preconditions_leave_the_node(fn):
    x = torch.randn(1, 3, 5, 5)
    exported = torch.export.export(Op(fn).eval(), (x,))
    before = [str(n.target) for n in exported.graph.nodes]
    assert rewrite_for_xnnpack(exported) == {}
    assert [str(n.target) for n in exported.graph.nodes] == before


def test_rewritten_outputs_keep_a_valid_program():
    x = torch.randn(2, 3, 4, 5)
    module = Op(lambda x: (x.amax(dim=(2, 3)), x.mean(dim=(2, 3)), x.repeat_interleave(3, dim=1))).eval()
    exported = torch.export.export(module, (x,))
    assert len(rewrite_for_xnnpack(exported)) == 3
    exported.validate()   # the signature names the new output nodes
    for got, want in zip(exported.module()(x), module(x)):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def _two_branch_net():
    spec = importlib.util.spec_from_file_location(
        "mynet_for_rewrites", Path(__file__).parents[2] / "examples" / "user_cnn" / "mynet.py")
    mynet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mynet)
    torch.manual_seed(0)
    return mynet.TwoBranchNet(32).eval()


def test_two_branch_net_leaves_fewer_ops_on_portable_kernels():
    model, x = _two_branch_net(), torch.zeros(1, 1, 28, 28)
    before, after = export_pte(model, (x,), rewrites=False), export_pte(model, (x,))
    assert {"aten.mean.dim", "aten.amax.default", "aten.expand_copy.default"} <= set(before.undelegated_ops)
    assert sum(after.undelegated_ops.values()) < sum(before.undelegated_ops.values())
    assert after.delegation()["fully_delegated"] and after.delegate_calls == 1
    inputs = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert compare_pte(after.buffer, model, inputs) <= ATOL
