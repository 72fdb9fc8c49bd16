"""ExecuTorch export: torch.export -> XNNPACK lowering -> .pte bytes, with a delegation check.

An op that XNNPACK does not take falls back to a portable kernel that can be ~100× slower
(peers.md finding 4), so a compute op left outside the delegate is an error, not a warning.
"""

from __future__ import annotations

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError

# Graph nodes that are plumbing, not compute, when left outside a delegate.
_PLUMBING = ("executorch_call_delegate", "getitem", "alloc", "view", "_clone_dim_order", "_to_dim_order_copy")


def lower_to_pte(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> bytes:
    """Export ``module`` for the ExecuTorch runtime with every compute op delegated to XNNPACK."""
    with quiet():
        return _lower(module, example_inputs)


def _lower(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        exported = torch.export.export(module.eval(), example_inputs)
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    except Exception as e:  # the exporter raises many types; the user needs the one line
        raise ExportError(f"ExecuTorch export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    leftover = undelegated_ops(edge.exported_program().graph_module)
    if leftover:
        raise ExportError(f"XNNPACK did not take {', '.join(sorted(set(leftover)))}; these would run as slow "
                          "portable kernels. Replace or remove those layers before exporting")
    return edge.to_executorch().buffer


def undelegated_ops(graph_module) -> list[str]:
    """Names of compute ops that remain outside any delegate."""
    names = []
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if not any(p in name for p in _PLUMBING):
            names.append(name)
    return names
