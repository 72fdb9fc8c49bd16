"""The latency floor of ops left on ExecuTorch's portable kernels, with and without the XNNPACK rewrites.

    python bench/bench_floor.py

Exports examples/user_cnn's TwoBranchNet (width 32, input 1x1x28x28, random weights) twice: as before
(``rewrites=False``) and with maestro_edge/export/xnnpack_rewrites.py. Prints each export's delegation
summary, their outputs' max |difference| from eager and from each other, and times both .pte side by side
in one interleaved session (1 thread, the project's protocol): p50 ms of each and their ratio.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "user_cnn"))

import mynet  # noqa: E402  (the user's project, outside the package)

from maestro_edge._quiet import quiet  # noqa: E402
from maestro_edge.export.pte import export_pte  # noqa: E402
from maestro_edge.latency.measure import Protocol, time_programs  # noqa: E402


def run(buffer: bytes, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with quiet():
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(buffer).load_method("forward")
        return [method.execute((x,))[0] for x in inputs]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b))


def main() -> None:
    torch.manual_seed(0)
    model, shape = mynet.TwoBranchNet(32).eval(), (1, 1, 28, 28)
    exports = {"before": export_pte(model, (torch.zeros(shape),), rewrites=False),
               "rewritten": export_pte(model, (torch.zeros(shape),))}
    for name, export in exports.items():
        print(f"{name:>9}: {export.delegation()}")

    inputs = [torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    with torch.no_grad():
        eager = [model(x) for x in inputs]
    outputs = {name: run(export.buffer, inputs) for name, export in exports.items()}
    for name, out in outputs.items():
        print(f"max |{name} - eager| = {max_diff(out, eager):.3g}")
    print(f"max |before - rewritten| = {max_diff(outputs['before'], outputs['rewritten']):.3g}")

    timings = time_programs({name: (e.buffer, shape) for name, e in exports.items()}, Protocol(threads=1))
    before, after = timings["before"].p50_ms, timings["rewritten"].p50_ms
    print(f"p50 ms (1 thread): before {before:.3f}, rewritten {after:.3f}, rewritten/before {after / before:.3f}")


if __name__ == "__main__":
    main()
