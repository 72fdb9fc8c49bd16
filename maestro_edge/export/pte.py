"""ExecuTorch export: torch.export -> XNNPACK lowering -> .pte bytes, with a delegation summary.

Ops XNNPACK takes run in its delegate; the rest run on ExecuTorch's portable CPU kernels, which can be
~100× slower for heavy ops (peers.md finding 4) but keep models with attention, layer norm, GELU or
embeddings exportable. Layer probes and ``full_delegation=True`` refuse any compute op left outside
the delegate (a probe that falls back would time the wrong kernel).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError
from maestro_edge.export.truncate import deployable
from maestro_edge.export.xnnpack_rewrites import rewrite_for_xnnpack
from maestro_edge.lod.checkpoint import LoDCheckpoint

# Graph nodes that are plumbing, not compute, when left outside a delegate.
_PLUMBING = ("executorch_call_delegate", "getitem", "alloc", "view", "_clone_dim_order", "_to_dim_order_copy",
             "alias_copy")


@dataclass(frozen=True)
class PteExport:
    buffer: bytes
    delegate_calls: int                                         # XNNPACK subgraphs
    undelegated_ops: dict[str, int] = field(default_factory=dict)   # op -> count on portable kernels

    def delegation(self) -> dict:
        return {"backend": "XNNPACK", "delegate_calls": self.delegate_calls,
                "undelegated_ops": dict(sorted(self.undelegated_ops.items())),
                "fully_delegated": not self.undelegated_ops}


def export_pte(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], full_delegation: bool = False,
               rewrites: bool = True) -> PteExport:
    """Export ``module`` for the ExecuTorch runtime: XNNPACK where it takes the op, portable kernels elsewhere.
    ``rewrites``: first rewrite ops XNNPACK would refuse into exact equivalents it takes (xnnpack_rewrites)."""
    with quiet():
        return _lower(module, example_inputs, full_delegation, rewrites)


def check_exportable(ckpt: LoDCheckpoint, full_delegation: bool = False) -> PteExport:
    """Export the untruncated model once: a model ExecuTorch cannot take fails in seconds, naming the op,
    not after minutes of layer timing."""
    return export_pte(deployable(ckpt.model, {}), ckpt.examples, full_delegation)


def lower_to_pte(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], full_delegation: bool = True) -> bytes:
    """The .pte bytes alone (probes: every compute op delegated, or an error)."""
    return export_pte(module, example_inputs, full_delegation).buffer


def _lower(module: nn.Module, example_inputs: tuple[torch.Tensor, ...], full_delegation: bool,
           rewrites: bool = True) -> PteExport:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        exported = torch.export.export(module.eval(), tuple(example_inputs))
        if rewrites:
            rewrite_for_xnnpack(exported)
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    except Exception as e:  # the exporter raises many types; the user needs the one line
        raise ExportError(f"ExecuTorch cannot export the model ({type(e).__name__}: {' '.join(str(e).split())[:240]}); "
                          "replace or remove the op it names") from None
    graph = edge.exported_program().graph_module.graph
    leftover = Counter(undelegated_ops(edge.exported_program().graph_module))
    if leftover and full_delegation:
        raise ExportError(f"XNNPACK did not take {', '.join(sorted(leftover))}; these would run as slow "
                          "portable kernels. Replace or remove those layers, or export without full delegation")
    calls = sum(1 for n in graph.nodes if "executorch_call_delegate" in getattr(n.target, "__name__", str(n.target)))
    try:
        buffer = edge.to_executorch().buffer
    except Exception as e:
        raise ExportError(f"ExecuTorch could not emit the program: {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}") from None
    return PteExport(buffer, calls, dict(leftover))


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
