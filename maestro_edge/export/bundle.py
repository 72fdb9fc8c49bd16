"""ExecuTorch BundledProgram (.bpte): the .pte plus reference inputs and expected outputs.

A target can then check itself: ExecuTorch's devtools example runner
(``examples/devtools/example_runner``, built with the devtools; see ExecuTorch's "Bundled Program"
docs for its flags) loads a ``.bpte``, runs a bundled input and compares the output with the bundled
one. Here every case is checked before the file is written, by the ExecuTorch runtime's own verifier,
at tight tolerances (``RTOL``/``ATOL`` below: |out − expected| ≤ atol + rtol·|expected|), so a bundle
that passes here does not fail on the target for tolerance reasons a looser check would hide.
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn

from maestro_edge._quiet import quiet
from maestro_edge.errors import ExportError

RTOL, ATOL = 1e-3, 1e-5


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


def check_bundle(bundle: bytes) -> dict:
    """Run every bundled case in the ExecuTorch runtime and compare it with its expected output.

    Returns ``{"cases", "rtol", "atol"}``; raises ExportError naming the first case that differs.
    """
    with quiet():
        from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
        from executorch.extension.pybindings.portable_lib import _load_bundled_program_from_buffer

        suites = deserialize_from_flatbuffer_to_bundled_program(bundle).method_test_suites
        cases = sum(len(suite.test_cases) for suite in suites if suite.method_name == "forward")
        program = _load_bundled_program_from_buffer(bundle)
        for case in range(cases):
            try:
                program.verify_result_with_bundled_expected_output("forward", case, rtol=RTOL, atol=ATOL)
            except RuntimeError as e:
                raise ExportError(f"case {case} of the bundled program differs from its expected output beyond "
                                  f"rtol {RTOL:g} + atol {ATOL:g} ({str(e).splitlines()[0]}); fit without --bundle "
                                  "and report this with the model") from None
    return {"cases": cases, "rtol": RTOL, "atol": ATOL}
