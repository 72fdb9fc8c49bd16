"""Probes: one micro-model per (layer, option), with the layer's real input shape; their export and MAC counts.

ONNX probes use the TorchScript exporter (``dynamo=False``, opset 18): over the 46 probes of the
default model it took 1.3 s against 34 s for the dynamo exporter, with bit-identical onnxruntime
outputs, the same node types (except that a bias-free Linear is ``MatMul`` instead of a bias-less
``Gemm``) and the same onnxruntime time within noise (median ratio 0.99). If that exporter fails
(it is deprecated), the dynamo exporter is used. Whole models (calibration) use the dynamo exporter,
as ``fit`` does for the .onnx it ships.
"""

from __future__ import annotations

import copy
import io
import warnings
from typing import Callable

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError
from maestro_edge.latency.estimated import dense_op
from maestro_edge.latency.measure import inputs_for
from maestro_edge.latency.ops import low_rank_pair
from maestro_edge.lod.grid import DENSE, rank_grid
from maestro_edge.lod.layers import lod_layers

SLOWEST_GFLOPS = 1.0       # below any target worth profiling (one Cortex-A53 core runs fp32 XNNPACK at a few GFLOP/s)
CALL_FLOOR_MS = 2.0        # per-call cost assumed on top of the arithmetic



def call_probe() -> tuple[nn.Module, tuple[int, ...]]:
    """A one-weight Linear: what a runtime call costs with (almost) no work in it."""
    return nn.Linear(1, 1).eval(), (1, 1)


@torch.no_grad()
def layer_input_shapes(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape of every LoD layer when the model runs on ``example_inputs`` (one forward pass)."""
    shapes, hooks = {}, []
    for name, layer in lod_layers(model).items():
        hooks.append(layer.register_forward_hook(lambda m, args, out, name=name: shapes.__setitem__(name, tuple(args[0].shape))))
    was_training = model.training
    model.eval()
    try:
        model(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes


def layer_options(layer) -> list[int | str]:
    """Options the solver may pick for one layer: the rank grid, plus dense."""
    return [*rank_grid(layer), DENSE]


def probe_module(layer, choice: int | str) -> nn.Module:
    """The layer alone at ``choice``, as plain nn modules."""
    if choice == DENSE:
        return layer.to_dense().eval()
    small = copy.deepcopy(layer).truncate_(choice)
    return small.to_sequential().eval()


def probe_name(layer_name: str, choice: int | str) -> str:
    return f"{layer_name}@{choice}"


def export_probe(module: nn.Module, shape: tuple, runtime: str, kind: str = "layer") -> bytes:
    """``module`` in the runtime's file format (see the module docstring for the exporter choice)."""
    example = inputs_for(shape)
    if runtime == "executorch-xnnpack":
        from maestro_edge.export.pte import lower_to_pte

        return lower_to_pte(module, example, full_delegation=kind == "layer")
    from maestro_edge.export.onnx_export import export_onnx_bytes

    if kind == "layer":
        try:
            return _legacy_onnx_bytes(module, example)
        except Exception:   # deprecated exporter gone or failing: the dynamo exporter is the reference
            pass
    return export_onnx_bytes(module, example)


def _legacy_onnx_bytes(module: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    buffer = io.BytesIO()
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, buffer, dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"])
    data = buffer.getvalue()
    if not data:
        raise ExportError("the TorchScript ONNX exporter wrote nothing")
    return data


# standard layer type -> multiply-accumulates of one call (module, output): what MAC counting sees of an exported
# model. A LoD layer type whose to_sequential() makes other layers registers them.
MAC_COUNTERS: dict[type, Callable[[nn.Module, torch.Tensor], int]] = {
    nn.Conv2d: lambda m, out: out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1],
    nn.Linear: lambda m, out: out.numel() * m.in_features,
}


def register_macs(layer_type: type, count: Callable[[nn.Module, torch.Tensor], int]) -> None:
    MAC_COUNTERS[layer_type] = count


@torch.no_grad()
def macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass through the module's registered layers (Conv2d, Linear...)."""
    total, hooks = [0], []

    def count(m, args, out):
        total[0] += MAC_COUNTERS[type(m)](m, out)

    for m in module.modules():
        if type(m) in MAC_COUNTERS:
            hooks.append(m.register_forward_hook(count))
    try:
        module.eval()(*inputs_for(shape))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def layer_macs_total(layer, in_shape: tuple[int, ...], choice: int | str) -> int:
    """Multiply-accumulates of one layer at ``choice`` for a batch-1 input of ``in_shape``, as the estimator sees
    the layer (latency/estimated.py:dense_op): its probe's arithmetic, without running it."""
    op = dense_op(layer, in_shape)
    return sum(o.macs() for o in ([op] if choice == DENSE else low_rank_pair(op, int(choice))))


def call_bound_ms(module: nn.Module, shape: tuple[int, ...]) -> float:
    """A generous upper bound on one call's time on any target worth profiling."""
    return CALL_FLOOR_MS + 2 * macs(module, shape) / (SLOWEST_GFLOPS * 1e9) * 1e3
