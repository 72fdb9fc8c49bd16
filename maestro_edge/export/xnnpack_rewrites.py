"""Exact ATen-graph rewrites that let XNNPACK take ops it would otherwise leave to portable kernels.

Applied to ``torch.export.export``'s program before lowering. Each rewrite replaces one node with ops
the XNNPACK partitioner accepts and computes the same values (copies, or the same reduction, up to fp32
summation order for mean); it fires only where its preconditions hold (the shape rewrites: a float32,
statically shaped input) and otherwise leaves the node alone. The partitioner's own constraints are in
executorch/backends/xnnpack/partition/config. One difference: a NaN in an amax window gives NaN in torch
and the portable kernel, the window's largest number in XNNPACK's max pool (as for F.max_pool2d itself).

Already delegated without help (nothing to rewrite): ``upsample_bilinear2d`` with a static output size
(the partitioner keeps it from decomposition), ``cat`` of 2 or more tensors (a portable op upstream only
splits the delegate), and slices with step 1 that drop something.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import fx

aten = torch.ops.aten


def _shape(node) -> list[int] | None:
    """The static shape of a float32 tensor node, else None."""
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    if not isinstance(val, torch.Tensor) or val.dtype != torch.float32:
        return None
    shape = list(val.shape)
    return shape if all(type(d) is int for d in shape) else None


def _dims(dims, rank: int) -> set[int]:
    dims = [dims] if isinstance(dims, int) else list(dims or range(rank))   # [] or None: every dim
    return {d % rank for d in dims}


def _arg(node: fx.Node, i: int, name: str, default=None):
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _call(node: fx.Node, op, *args) -> fx.Node:
    """A new ``op(*args)`` node (at the graph's insertion point) with the fake value the lowering reads."""
    new = node.graph.call_function(op, args)
    new.meta.update({k: node.meta[k] for k in ("stack_trace", "nn_module_stack") if k in node.meta})
    new.meta["val"] = op(*fx.node.map_arg(args, lambda n: n.meta["val"]))
    return new


def _mean(node: fx.Node):
    # XNNPACK's mean is a global average pool: 4-D, dims (2, 3), keepdim=True only. Without keepdim
    # (``x.mean(dim=(2, 3))``) it fell to the portable kernel: take the keepdim mean, then drop the dims.
    x, shape = node.args[0], _shape(node.args[0])
    if (shape is None or len(shape) != 4 or _arg(node, 2, "keepdim", False) or node.kwargs.get("dtype")
            or _dims(node.args[1], 4) != {2, 3}):
        return None
    mean = _call(node, aten.mean.dim, x, [2, 3], True)
    return _call(node, aten.view.default, mean, shape[:2])


def _amax(node: fx.Node):
    # XNNPACK has no amax; over the spatial dims of a 4-D tensor it is a max pool whose window is the
    # reduced extent (stride = window, no padding), which XNNPACK takes. A 1x1 window is refused by
    # XNNPACK's max pool (and is a no-op): left alone.
    x, shape = node.args[0], _shape(node.args[0])
    if shape is None or len(shape) != 4:
        return None
    dims = _dims(_arg(node, 1, "dim", []), 4)
    if not dims <= {2, 3}:
        return None
    window = [shape[2] if 2 in dims else 1, shape[3] if 3 in dims else 1]
    if window == [1, 1]:
        return None
    pooled = _call(node, aten.max_pool2d.default, x, window, window)
    return _call(node, aten.view.default, pooled, list(node.meta["val"].shape))


def _repeat_interleave(node: fx.Node):
    # Decomposed, repeat_interleave becomes unsqueeze + expand + clone + view; XNNPACK has no expand
    # (and takes unsqueeze on the last dim only), so it all ran on portable kernels. With a static shape
    # it is a view adding a unit dim after ``dim``, a cat of ``repeats`` copies along it, and a view
    # merging it back: all three XNNPACK takes (it splits a cat of more than 5 tensors itself).
    x, shape, repeats, dim = node.args[0], _shape(node.args[0]), node.args[1], _arg(node, 2, "dim")
    if shape is None or not shape or type(repeats) is not int or repeats < 2 or dim is None:
        return None
    d = dim % len(shape)
    # One view per copy: the partitioner counts a cat's distinct input nodes, and refuses a cat of one.
    units = [_call(node, aten.view.default, x, shape[:d + 1] + [1] + shape[d + 1:]) for _ in range(repeats)]
    copies = _call(node, aten.cat.default, units, d + 1)
    return _call(node, aten.view.default, copies, list(node.meta["val"].shape))


def _alias(node: fx.Node):
    # torch.export turns a slice that keeps everything (``side[..., :H, :W]`` of an H x W tensor) into
    # alias, which the lowering keeps as an alias_copy outside the delegate: it splits the delegate in
    # two. An alias shares its input's storage, so its users may read the input itself; an alias that is
    # a program output is left alone (the output would then alias another value).
    return None if any(user.op == "output" for user in node.users) else node.args[0]


# aten op -> rewrite: builds the replacement before the node and returns its output node, or None.
REWRITES: dict[torch._ops.OpOverload, Callable[[fx.Node], fx.Node | None]] = {
    aten.mean.dim: _mean,
    aten.amax.default: _amax,
    aten.repeat_interleave.self_int: _repeat_interleave,
    aten.alias.default: _alias,
}


def rewrite_for_xnnpack(exported: torch.export.ExportedProgram) -> dict[str, int]:
    """Apply :data:`REWRITES` in place to ``exported``'s graph; returns how often each fired."""
    graph = exported.graph_module.graph
    fired: dict[str, int] = {}
    for node in list(graph.nodes):
        rewrite = REWRITES.get(node.target) if node.op == "call_function" else None
        if rewrite is None:
            continue
        with graph.inserting_before(node):
            new = rewrite(node)
        if new is None:
            continue
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        fired[str(node.target)] = fired.get(str(node.target), 0) + 1
    if fired:
        _rename_outputs(exported)
        graph.lint()
        exported.graph_module.recompile()
    return fired


def _rename_outputs(exported) -> None:
    """Keep the graph signature's output names in step with the output node's (a rewrite can replace an
    output)."""
    outputs = fx.node.map_arg(exported.graph_module.graph.output_node().args[0], lambda n: n)
    for spec, node in zip(exported.graph_signature.output_specs, outputs):
        if isinstance(node, fx.Node) and hasattr(spec.arg, "name"):
            spec.arg.name = node.name
