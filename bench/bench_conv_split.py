"""How a k x k conv's low-rank split costs on XNNPACK, split by split (the finding of BENCHMARKS P10).

    python bench/bench_conv_split.py [--shape 128,64,28] [--ranks 8,16,32]

One Conv2d C_in -> C_out, 3x3, on an HxW input, and at each rank r three exact-rank splits of it, all exported
with maestro-edge's export call and timed side by side in one interleaved session (1 thread):
- ``kxk-1x1``: k x k conv C_in -> r, then 1 x 1 conv r -> C_out (maestro-edge's split, the Maestro paper's);
- ``kx1-1xk``: k x 1 conv C_in -> r, then 1 x k conv r -> C_out (AIMET's spatial SVD, Jaderberg et al. 2014);
- ``1x1-kxk``: 1 x 1 conv C_in -> r, then k x k conv r -> C_out (the transposed split).
Each split is the SVD of a different reshaping of the same weight, so they approximate it differently; this
measures only what each costs. Prints a markdown table: ms and fraction of the dense conv.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def splits(c_in: int, c_out: int, rank: int, k: int = 3) -> dict[str, nn.Module]:
    p = k // 2
    return {
        "kxk-1x1": nn.Sequential(nn.Conv2d(c_in, rank, k, padding=p, bias=False), nn.Conv2d(rank, c_out, 1)),
        "kx1-1xk": nn.Sequential(nn.Conv2d(c_in, rank, (k, 1), padding=(p, 0), bias=False),
                                 nn.Conv2d(rank, c_out, (1, k), padding=(0, p))),
        "1x1-kxk": nn.Sequential(nn.Conv2d(c_in, rank, 1, bias=False), nn.Conv2d(rank, c_out, k, padding=p)),
    }


def main(argv=None) -> None:
    from maestro_edge.export.pte import export_pte
    from maestro_edge.latency.measure import Protocol, time_programs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,64,28", help="C_in,C_out,H (square input)")
    parser.add_argument("--ranks", default="8,16,32")
    args = parser.parse_args(argv)
    c_in, c_out, size = (int(v) for v in args.shape.split(","))
    ranks = [int(r) for r in args.ranks.split(",")]
    torch.manual_seed(0)
    example = (torch.randn(1, c_in, size, size),)
    modules = {"dense": nn.Conv2d(c_in, c_out, 3, padding=1)}
    for rank in ranks:
        modules.update({f"{name}@{rank}": m for name, m in splits(c_in, c_out, rank).items()})
    programs = {name: (export_pte(m.eval(), example).buffer, example) for name, m in modules.items()}
    timings = time_programs(programs, Protocol(threads=1, rounds=21))
    dense = timings["dense"].p50_ms
    print(f"conv 3x3 {c_in} -> {c_out} at {size}x{size}, ExecuTorch XNNPACK, 1 thread, p50 of 21 interleaved "
          f"rounds: dense {dense:.4f} ms\n")
    print("| rank | " + " | ".join(splits(1, 1, 1)) + " |")
    print("|---|" + "---|" * 3)
    for rank in ranks:
        cells = [f"{timings[f'{name}@{rank}'].p50_ms:.4f} ms ({timings[f'{name}@{rank}'].p50_ms / dense:.0%})"
                 for name in splits(1, 1, 1)]
        print(f"| {rank} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
