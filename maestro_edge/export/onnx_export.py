"""ONNX export (torch.onnx dynamo exporter, weights embedded) checked by onnx.checker."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError


def export_onnx_bytes(module: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> bytes:
    """The model as a self-contained .onnx file (no side ``.onnx.data``), as bytes."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with quiet():
            try:
                torch.onnx.export(module.eval(), example_inputs, path, dynamo=True, external_data=False,
                                  input_names=["input"], output_names=["logits"], verbose=False)
            except Exception as e:
                raise ExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
        try:
            onnx.checker.check_model(onnx.load(path), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"exported ONNX model failed onnx.checker: {str(e).splitlines()[0][:200]}") from None
        return Path(path).read_bytes()
