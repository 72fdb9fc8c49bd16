"""Timing leaves the caller's thread counts as they were: a fit that measures and then fine-tunes
(``fit --recover-epochs``) or a user's script that trains after profiling keeps every core."""

from __future__ import annotations

import torch
from torch import nn

from maestro_edge.export.pte import export_pte
from maestro_edge.latency.measure import Protocol, time_programs


def test_time_programs_restores_torch_threads():
    example = (torch.randn(1, 8),)
    pte = export_pte(nn.Sequential(nn.Linear(8, 8), nn.ReLU()).eval(), example).buffer
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        timings = time_programs({"tiny": (pte, example)}, Protocol(threads=1, rounds=2, calls=3, warmup=1))
        assert timings["tiny"].p50_ms > 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
