"""Torch-Pruning (structured channel pruning) as a user would run it: MetaPruner, one importance, one ratio.

``prune`` returns a pruned copy: plain nn layers with fewer channels, exported like any model. Taylor
importance needs gradients: they come from ``grad_batches`` (training batches, cross-entropy), as in
Torch-Pruning's own examples.

Known trap (issue 23): a graph with ``repeat_interleave`` is pruned silently wrong (TwoBranchNet's ``side``
conv feeds one): the error appears only at forward time. ``safe_ignored_layers`` finds such layers the way a
user would, by pruning, running the model and adding the offending layer to ``ignored_layers``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

IMPORTANCE = {
    "magnitude": lambda tp: tp.importance.GroupMagnitudeImportance(p=2),
    "taylor": lambda tp: tp.importance.GroupTaylorImportance(),
}


def prune(dense: nn.Module, example: torch.Tensor, importance: str, ratio: float, round_to: int | None,
          ignored: list[str], grad_batches=()) -> nn.Module:
    """A copy of ``dense`` with ``ratio`` of every prunable layer's output channels removed (Torch-Pruning's
    per-layer ratio, not global), channel counts rounded to multiples of ``round_to``."""
    import torch_pruning as tp

    model = copy.deepcopy(dense).eval()
    if ratio <= 0:
        return model
    modules = dict(model.named_modules())
    pruner = tp.pruner.MetaPruner(model, example, importance=IMPORTANCE[importance](tp), pruning_ratio=ratio,
                                  ignored_layers=[modules[name] for name in ignored], round_to=round_to)
    if importance == "taylor":
        model.zero_grad()
        for x, y in grad_batches:
            F.cross_entropy(model(x), y).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


def safe_ignored_layers(dense: nn.Module, example: torch.Tensor, always: list[str]) -> list[str]:
    """``always`` (the classifier) plus every layer whose pruning breaks the forward, found one at a time."""
    ignored = list(always)
    for _ in range(len(list(dense.modules()))):
        model = prune(dense, example, "magnitude", 0.5, None, ignored)
        try:
            model(example)
            return ignored
        except RuntimeError:
            ignored.append(_culprit(dense, example, ignored))
    raise RuntimeError("Torch-Pruning breaks the model whatever is ignored")


def _culprit(dense, example, ignored) -> str:
    """The first conv/linear whose pruning alone (everything else ignored) breaks the forward."""
    layers = [n for n, m in dense.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n not in ignored]
    for name in layers:
        others = [n for n in layers if n != name] + ignored
        try:
            prune(dense, example, "magnitude", 0.5, None, others)(example)
        except RuntimeError:
            return name
    raise RuntimeError("no single layer explains the failure")


def prune_encoder(dense: nn.Module, example: tuple, ffn_ratio: float, head_ratio: float) -> nn.Module:
    """A copy of a Hugging Face BERT-style encoder (``model.bert.encoder.layer[i]``) with ``ffn_ratio`` of every
    FFN's hidden units and ``head_ratio`` of every block's attention heads removed, magnitude importance; the
    residual width (embeddings, attention output, FFN output, LayerNorms) stays whole. Torch-Pruning's head
    pruning (``num_heads``, ``prune_num_heads``) updates its own bookkeeping only: each attention module's
    ``num_attention_heads`` and ``all_head_size`` are set here from the pruned query projection."""
    import torch_pruning as tp

    model = copy.deepcopy(dense).eval().requires_grad_(True)   # Torch-Pruning leaves frozen weights alone
    blocks = model.bert.encoder.layer
    attention = [block.attention.self for block in blocks]
    num_heads = {lin: a.num_attention_heads for a in attention for lin in (a.query, a.key, a.value)}
    residual = [m for block in blocks for m in (block.attention.output.dense, block.output.dense)]
    pruner = tp.pruner.MetaPruner(model, example, importance=IMPORTANCE["magnitude"](tp), pruning_ratio=ffn_ratio,
                                  ignored_layers=residual, num_heads=num_heads, prune_num_heads=True,
                                  prune_head_dims=False, head_pruning_ratio=head_ratio)
    pruner.step()
    for a in attention:
        a.all_head_size = a.query.out_features
        a.num_attention_heads = a.all_head_size // a.attention_head_size
    return model.eval()
