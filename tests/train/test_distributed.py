"""torchrun data parallelism on CPU (gloo): two processes end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maestro_edge.lod.checkpoint import LoDCheckpoint

RUNNER = Path(__file__).with_name("ddp_runner.py")


@pytest.mark.parametrize("mode", ["plain", "distill", "warmup"])
def test_two_process_run_keeps_identical_weights(tmp_path, mode):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(RUNNER), str(tmp_path), mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert r0["active"] == r1["active"]
    assert r0["drawn"] == r1["drawn"] and len(r0["drawn"]) == 3        # same draws, 3 steps (none in a warm-up)
    assert not set(r0["shard"].tolist()) & set(r1["shard"].tolist())        # disjoint data shards
    assert len(r0["shard"]) + len(r1["shard"]) == 96
    assert (r0["on_epoch_calls"], r1["on_epoch_calls"]) == (r0["epochs"], 0)  # progress on process 0 only
    ckpt = LoDCheckpoint.load(tmp_path / "model.pt")                          # written once, by process 0
    assert ckpt.progress["complete"] and ckpt.importance["layers"]
    for key, value in ckpt.model.state_dict().items():
        assert torch.equal(value, r0["state"][key]), key
