"""Probes: one micro-model per (layer, option), with the layer's real input shape."""

from __future__ import annotations

import copy

import torch
from torch import nn

from maestro_edge.lod.grid import rank_grid
from maestro_edge.lod.layers import lod_layers

DENSE = "dense"


@torch.no_grad()
def layer_input_shapes(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape of every LoD layer when the model runs on ``example_inputs`` (one forward pass)."""
    shapes, hooks = {}, []
    for name, layer in lod_layers(model).items():
        hooks.append(layer.register_forward_hook(lambda m, args, out, name=name: shapes.__setitem__(name, tuple(args[0].shape))))
    was_training = model.training
    model.eval()
    try:
        model(*example_inputs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes


def layer_options(layer) -> list[int | str]:
    """Options the solver may pick for one layer: the rank grid, plus dense."""
    return [*rank_grid(layer), DENSE]


def probe_module(layer, choice: int | str) -> nn.Module:
    """The layer alone at ``choice``, as plain nn modules."""
    if choice == DENSE:
        return layer.to_dense().eval()
    small = copy.deepcopy(layer).truncate_(choice)
    return small.to_sequential().eval()


def probe_name(layer_name: str, choice: int | str) -> str:
    return f"{layer_name}@{choice}"
