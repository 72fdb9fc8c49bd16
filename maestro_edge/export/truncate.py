"""Turn a LoD model plus a rank plan into a small plain-PyTorch model ready to export."""

from __future__ import annotations

import copy
import warnings

from torch import nn

from maestro_edge.errors import UsageError
from maestro_edge.lod.factorize import _set_submodule
from maestro_edge.lod.grid import DENSE
from maestro_edge.lod.layers import lod_layers



def truncate_(model: nn.Module, choices: dict[str, int | str]) -> nn.Module:
    """Apply ``choices`` (layer name -> rank or "dense") in place and return ``model``.

    A rank slices the layer's factors to that prefix; "dense" multiplies the active factors back into
    one layer (chosen where the pair would be slower). Layers not named keep their active rank.
    """
    layers = lod_layers(model)
    unknown = set(choices) - set(layers)
    if unknown:
        raise UsageError(f"the plan names layers this model does not have: {', '.join(sorted(unknown))}; "
                         "was it made for another model?")
    for name, choice in choices.items():
        layer = layers[name]
        if choice == DENSE:
            _set_submodule(model, name, layer.to_dense())
        elif isinstance(choice, int) and not isinstance(choice, bool) and 1 <= choice <= layer.active_rank:
            layer.truncate_(choice)
        else:
            raise UsageError(f"rank {choice!r} for layer {name} is not in 1..{layer.active_rank} or 'dense'")
    return model


def deployable(model: nn.Module, choices: dict[str, int | str]) -> nn.Module:
    """A truncated copy of ``model`` built only from standard nn layers, in eval mode."""
    with warnings.catch_warnings():   # copying a loaded program's tree specs warns about torch internals
        warnings.filterwarnings("ignore", category=FutureWarning)
        copied = copy.deepcopy(model)
    small = truncate_(copied, choices)
    for name, layer in lod_layers(small).items():
        _set_submodule(small, name, layer.to_sequential())
    return small.eval()
