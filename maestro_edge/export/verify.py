"""Run exported models in their runtimes and compare with eager PyTorch.

Samples are tuples of input tensors (one call each: images, or token ids and an attention mask);
outputs of any structure are compared tensor by tensor, in pytree order.
"""

from __future__ import annotations

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError
from maestro_edge.lod.checkpoint import output_tensors

# fp32 kernels differ in summation order; logits of these models are O(10), so 1e-3 absolute is tight.
ATOL = 1e-3
Samples = list[tuple[torch.Tensor, ...]]


def as_samples(inputs) -> Samples:
    """A batch tensor of inputs (the built-in image models) as batch-1 samples; a list of tuples as is."""
    if isinstance(inputs, torch.Tensor):
        return [(x[None],) for x in inputs]
    return [tuple(s) for s in inputs]


@torch.no_grad()
def compare_pte(pte: bytes, module: nn.Module, inputs) -> float:
    """Max |ExecuTorch − eager| over the samples; raises ExportError beyond ATOL."""
    with quiet():   # loading and the first call print cpuinfo lines from C++
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(pte).load_method("forward")
        worst = max(_difference(method.execute(sample), module(*sample)) for sample in as_samples(inputs))
    return _check("ExecuTorch .pte", worst)


@torch.no_grad()
def compare_onnx(onnx_bytes: bytes, module: nn.Module, inputs) -> float:
    """Max |onnxruntime − eager| over the samples; raises ExportError beyond ATOL."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for sample in as_samples(inputs):
        feeds = {f"input_{i}" if len(sample) > 1 else "input": x.numpy() for i, x in enumerate(sample)}
        outputs = session.run(None, {name: feeds[name] for name in names})   # an unused input may be dropped
        worst = max(worst, _difference([torch.from_numpy(o) for o in outputs], module(*sample)))
    return _check("ONNX", worst)


def _difference(runtime_outputs, eager_output) -> float:
    eager = output_tensors(eager_output)
    got = list(runtime_outputs)
    if len(got) != len(eager) or any(tuple(g.shape) != tuple(e.shape) for g, e in zip(got, eager)):
        raise ExportError(f"the exported model returns {len(got)} output(s) of other shapes than PyTorch's "
                          f"{len(eager)}; the export is wrong")
    return max((float((g.double() - e.double()).abs().max()) for g, e in zip(got, eager) if e.numel()), default=0.0)


def _check(what: str, worst: float) -> float:
    if worst != worst:   # NaN: the model's own outputs are not numbers, not an export fault
        raise ExportError(f"{what} and PyTorch outputs contain NaN; check the model's weights and inputs")
    if not worst <= ATOL:
        raise ExportError(f"{what} output differs from PyTorch by {worst:.3g} (> {ATOL}); the export is wrong")
    return worst
