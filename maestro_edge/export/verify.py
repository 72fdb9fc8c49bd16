"""Run exported models in their runtimes and compare with eager PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError

# fp32 kernels differ in summation order; logits of these models are O(10), so 1e-3 absolute is tight.
ATOL = 1e-3


@torch.no_grad()
def compare_pte(pte: bytes, module: nn.Module, inputs: torch.Tensor) -> float:
    """Max |ExecuTorch − eager| over ``inputs`` (batch-1 calls); raises ExportError beyond ATOL."""
    with quiet():   # loading and the first call print cpuinfo lines from C++
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(pte).load_method("forward")
        worst = max(float((method.execute((x[None],))[0] - module(x[None])).abs().max()) for x in inputs)
    return _check("ExecuTorch .pte", worst)


@torch.no_grad()
def compare_onnx(onnx_bytes: bytes, module: nn.Module, inputs: torch.Tensor) -> float:
    """Max |onnxruntime − eager| over ``inputs`` (batch-1 calls); raises ExportError beyond ATOL."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    worst = max(float(abs(session.run(None, {name: x[None].numpy()})[0] - module(x[None]).numpy()).max())
                for x in inputs)
    return _check("ONNX", worst)


def _check(what: str, worst: float) -> float:
    if not worst <= ATOL:
        raise ExportError(f"{what} output differs from PyTorch by {worst:.3g} (> {ATOL}); the export is wrong")
    return worst
