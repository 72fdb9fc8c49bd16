"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on CUDA).

``torchrun --nproc_per_node N -m maestro_edge train ...`` starts N processes with RANK/WORLD_SIZE in
their environment; ``setup()`` joins them into one process group. Every process builds the same
model from the same seed, draws the same (layer, rank) sequence from the same sampler seed, and
reads a disjoint shard of every global batch; DistributedDataParallel averages the gradients, so
the weights stay identical everywhere. Process 0 alone writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    owns_group: bool     # True when setup() created the process group (and teardown() ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        torch_dist.barrier()

    def broadcast_(self, tensors) -> None:
        """Overwrite ``tensors`` in every process with process 0's values."""
        for tensor in tensors:
            torch_dist.broadcast(tensor, src=0)

    def all_reduce_sum(self, total: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
        """Sum a 0-d tensor and an int over all processes."""
        both = torch.stack([total.double(), torch.tensor(float(count), dtype=torch.float64, device=total.device)])
        torch_dist.all_reduce(both)
        return both[0], int(both[1].item())


def launched_distributed() -> bool:
    """True inside a multi-process torchrun launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | torch.device = "cpu") -> DistContext | None:
    """Join the torchrun process group (None when not launched by torchrun with >1 processes)."""
    if not launched_distributed():
        return None
    owns = not torch_dist.is_initialized()
    cuda = torch.device(device).type == "cuda"
    if owns:
        torch_dist.init_process_group("nccl" if cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    return DistContext(torch_dist.get_rank(), torch_dist.get_world_size(), local_rank, owns)


def device_for(device: str | torch.device, dist: DistContext | None) -> torch.device:
    """``cuda`` becomes this process's GPU (``cuda:LOCAL_RANK``) in a distributed run."""
    device = torch.device(device)
    if dist and device.type == "cuda" and device.index is None:
        return torch.device("cuda", dist.local_rank)
    return device


def teardown(dist: DistContext | None) -> None:
    if dist and dist.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def is_main_process() -> bool:
    """False on every process but rank 0 of a torchrun launch (use it to print once)."""
    return int(os.environ.get("RANK", "0")) == 0
