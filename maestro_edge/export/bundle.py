"""ExecuTorch BundledProgram (.bpte): the .pte plus reference inputs and expected outputs.

A target can then check itself: ExecuTorch's devtools example runner
(``examples/devtools/example_runner``, built with the devtools) loads ``model.bpte``, runs each bundled
input and compares the outputs with the bundled ones. Here the bundle is checked the same way before
it is written, with the ExecuTorch runtime's own verifier, at the tolerance used for the .pte itself.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError
from maestro_edge.export.verify import ATOL


@torch.no_grad()
def bundle_pte(pte: bytes, module: nn.Module, inputs: torch.Tensor) -> bytes:
    """A BundledProgram of ``pte`` with one test case per input (batch 1), expected outputs from ``module``."""
    with quiet():
        from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
        from executorch.devtools.bundled_program.core import BundledProgram
        from executorch.devtools.bundled_program.serialize import serialize_from_bundled_program_to_flatbuffer

        cases = [MethodTestCase(inputs=(x[None],), expected_outputs=(module(x[None]),)) for x in inputs]
        # The bundler reads the program from a file when it is not handed the exporter's manager object.
        with tempfile.NamedTemporaryFile(suffix=".pte") as program:
            program.write(pte)
            program.flush()
            bundled = BundledProgram(None, [MethodTestSuite("forward", cases)], pte_file_path=program.name)
            return serialize_from_bundled_program_to_flatbuffer(bundled)


def check_bundle(bundle: bytes, cases: int) -> int:
    """Run every bundled case in the ExecuTorch runtime and compare with its expected output (``ATOL``).

    Returns the number of cases checked; raises ExportError naming the first case that differs.
    """
    with quiet():
        from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

        program = _load_bundled_program_from_buffer(bundle)
        for case in range(cases):
            try:
                program.verify_result_with_bundled_expected_output("forward", case, rtol=0.0, atol=ATOL)
            except RuntimeError as e:
                raise ExportError(f"the bundled program's case {case} differs from its expected output "
                                  f"({str(e).splitlines()[0]}); the .bpte is wrong") from None
    return cases
