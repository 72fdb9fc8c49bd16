"""Run by tests/train/test_distributed.py under ``python -m torch.distributed.run --nproc_per_node 2``.

Trains a tiny LoD model for one epoch with ``train_checkpoint`` (which joins the torchrun process
group itself) and saves what this process ended with, so the test can compare the processes.
"""

import os
import sys
from pathlib import Path

import torch

from maestro_edge.train.loop import Recipe, epoch_batches
from maestro_edge.train.run import train_checkpoint
from maestro_edge.train.sampler import SingleLayerSampler

drawn = []
_step = SingleLayerSampler.step
SingleLayerSampler.step = lambda self: drawn.append(_step(self)) or drawn[-1]     # record the (layer, rank) draws

torch.set_num_threads(1)
out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
mode = sys.argv[2] if len(sys.argv) > 2 else "plain"
recipe = Recipe(epochs=2 if mode == "warmup" else 1, batch_size=32, lr=0.05, gl_lambda=1e-3, shrink_threshold=0.3,
                seed=0, bn_samples=64, distill=mode == "distill", warmup_epochs=1 if mode == "warmup" else 0)
ranks_seen = []
ckpt = train_checkpoint("small_cnn", "digits", recipe, out / "model.pt", arch_kwargs={"widths": [8, 16], "hidden": 16},
                        limit=96, resume=False, on_epoch=lambda epoch, metrics: ranks_seen.append(epoch))


class Ctx:
    world_size = int(os.environ["WORLD_SIZE"])


Ctx.rank = rank
shard = torch.cat(list(epoch_batches(96, recipe.batch_size, recipe.seed, 0, Ctx)))
torch.save({"state": ckpt.model.state_dict(), "shard": shard, "on_epoch_calls": len(ranks_seen), "drawn": drawn,
            "active": ckpt.metrics["active_ranks"], "epochs": recipe.epochs}, out / f"rank{rank}.pt")
