"""ONNX export (torch.onnx dynamo exporter, weights embedded, batch dimension dynamic) checked by onnx.checker."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError
from maestro_edge.lod.checkpoint import output_tensors
from maestro_edge.lod.program import batch_dynamic_shapes


def export_onnx_bytes(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> bytes:
    """The model as a self-contained .onnx file (no side ``.onnx.data``), as bytes."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        example_inputs = tuple(example_inputs)
        names = ["input"] if len(example_inputs) == 1 else [f"input_{i}" for i in range(len(example_inputs))]
        with torch.no_grad():
            outputs = len(output_tensors(module.eval()(*example_inputs)))
        kw = dict(dynamo=True, external_data=False, input_names=names, verbose=False,
                  output_names=["logits"] if outputs == 1 else None)
        with quiet():
            try:   # batch dimension dynamic (examples twice, so it is not specialised to 1) ...
                doubled = tuple(torch.cat([x, x]) for x in example_inputs)
                batch = torch.export.Dim("batch")
                torch.onnx.export(module, doubled, path, dynamic_shapes=batch_dynamic_shapes(module, doubled, batch), **kw)
            except Exception:   # ... unless the model fixes its batch size
                try:
                    torch.onnx.export(module, example_inputs, path, **kw)
                except Exception as e:
                    raise ExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        try:
            onnx.checker.check_model(onnx.load(path), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"exported ONNX model failed onnx.checker: {str(e).splitlines()[0][:200]}") from None
        return Path(path).read_bytes()
