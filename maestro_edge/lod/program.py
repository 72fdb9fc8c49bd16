"""A user's LoD model as a ``torch.export`` program: saved and loaded without the user's code.

The factorized model is exported once with every LoD layer and BatchNorm kept as a call of its own
(``preserve_module_call_signature``). Loading unflattens the program and swaps those calls back for
real modules rebuilt from plain JSON configs: LoD layers, so ranks can be sliced, truncated and made
dense exactly as for the built-in models; BatchNorm, so its statistics can be recalibrated after a
truncation (the program itself is frozen in eval mode). Everything else runs as the exported graph.

The archive is PyTorch's own PT2 format plus one JSON extra file. ``torch.export.load`` falls back to
unpickling for some payloads; ``check_archive`` refuses any such payload before it is read.
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import pickle
import warnings
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maestro_edge import validate
from maestro_edge.errors import CheckpointError
from maestro_edge.lod.layers import LOD_LAYER_TYPES, lod_layers

META_FILE = "maestro_edge.json"
SAVE_AGAIN = "create it again with LoDCheckpoint.from_model(...).save(path)"   # what a damaged archive needs
BATCH_NORMS = {cls.__name__: cls for cls in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)}
# Node metadata the exporter leaves on the unflattened graphs: fake tensors with symbolic sizes, which
# copy.deepcopy cannot copy. The graphs run without them.
_TRACE_META = ("val", "example_value", "tensor_meta", "unbacked_bindings", "nn_module_stack", "source_fn_stack")


def batch_norm_configs(model: nn.Module) -> dict[str, dict]:
    """name -> constructor arguments of every torch BatchNorm module (they are recalibrated after truncation)."""
    return {name: {"kind": type(m).__name__, "num_features": m.num_features, "eps": m.eps,
                   "momentum": m.momentum, "affine": m.affine}
            for name, m in model.named_modules() if type(m) in BATCH_NORMS.values() and m.track_running_stats}


class _Root(nn.Module):
    """The user's model under a ``forward(*args)`` with the same submodule and tensor names.

    Unflattening passes a top-level input twice to a preserved submodule that reads it directly when
    the model's own forward argument shares the submodule's internal names (``nn.Sequential.forward(
    self, input)``); positional ``*args`` placeholders never collide.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.__dict__["_model"] = model   # not a child: the names stay the model's own
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in model.named_buffers(recurse=False):
            self.register_buffer(name, buffer)

    def forward(self, *args):
        return self._model(*args)


def batch_dynamic_shapes(module: nn.Module, inputs: tuple, dim) -> tuple:
    """Dimension 0 of every input dynamic, in the structure torch.export expects for ``module.forward``:
    one spec per parameter, or one tuple for a ``*args`` forward."""
    specs = tuple({0: dim} for _ in inputs)
    parameters = inspect.signature(module.forward).parameters.values()
    return (specs,) if any(p.kind is p.VAR_POSITIONAL for p in parameters) else specs


def export_program(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], keep: list[str]):
    """``torch.export`` of ``model`` in eval mode, batch dimension dynamic where the model allows it."""
    root = _Root(model.eval())
    # A batch of 1 would be specialised; a batch of 2 (the examples twice) lets the exporter keep it free.
    doubled = tuple(torch.cat([x, x]) for x in example_inputs)
    dynamic = batch_dynamic_shapes(root, doubled, torch.export.Dim.AUTO)
    try:
        return torch.export.export(root, doubled, dynamic_shapes=dynamic, preserve_module_call_signature=tuple(keep))
    except Exception:   # the model fixes its batch size: export it as given
        return torch.export.export(root, example_inputs, preserve_module_call_signature=tuple(keep))


def build_module(program, layers: dict[str, dict], batch_norms: dict[str, dict]) -> nn.Module:
    """The program as an nn.Module whose LoD layers and BatchNorms are real modules again."""
    with warnings.catch_warnings():   # unflatten warns about its own internal get_attr nodes
        warnings.simplefilter("ignore")
        module = torch.export.unflatten(program)
    for sub in module.modules():
        if hasattr(sub, "graph") and isinstance(sub.graph, torch.fx.Graph):
            for node in sub.graph.nodes:
                for key in _TRACE_META:
                    node.meta.pop(key, None)
    for name, spec in layers.items():
        config = spec["config"]
        new = _rebuilt(partial(LOD_LAYER_TYPES[config["kind"]].from_config, config), module.get_submodule(name), name)
        new.active_rank = spec["active_rank"]
        module.set_submodule(name, new)
    for name, config in batch_norms.items():
        make = partial(BATCH_NORMS[config["kind"]], config["num_features"], eps=config["eps"],
                       momentum=config["momentum"], affine=config["affine"])
        module.set_submodule(name, _rebuilt(make, module.get_submodule(name), name))
    return module.eval()


def _rebuilt(make, graph_module: nn.Module, name: str) -> nn.Module:
    """``make()`` holding the exported submodule's parameters and buffers (names and shapes must agree).

    Made on the meta device first: a config whose sizes do not match the program's tensors (a huge one
    in a damaged file) is refused before anything is allocated.
    """
    source = {**dict(graph_module.named_parameters()), **dict(graph_module.named_buffers())}
    with torch.device("meta"):
        target = make().state_dict()
    if set(source) != set(target) or any(source[k].shape != target[k].shape for k in target):
        raise ValueError(f"layer {name}: the program's tensors {sorted(source)} do not match its config")
    new = make()
    new.load_state_dict({k: v.detach().clone() for k, v in source.items()})
    return new


def check_archive(path: Path) -> None:
    """Refuse a PT2 archive with any payload that ``torch.export.load`` would unpickle, or that cannot be read."""
    try:
        _check_payloads(path)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds pickled objects (sample inputs); refusing to load it") from None
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, TypeError, RuntimeError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a readable model program ({type(e).__name__}); {SAVE_AGAIN}") from None


def _check_payloads(path: Path) -> None:
    from torch.export.pt2_archive import constants as pt2

    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            base = name.split("/", 1)[-1]
            if base.startswith(pt2.WEIGHTS_DIR) or base.startswith(pt2.CONSTANTS_DIR):
                if base.endswith(".pt"):
                    raise CheckpointError(f"{path} holds pickled weights ({base}); refusing to load it")
                if base.endswith("config.json"):
                    for entry in validate.parse_json(archive.read(name).decode()).get("config", {}).values():
                        pickled = entry.get("use_pickle") or not entry.get("path_name", "").startswith(
                            (pt2.WEIGHT_FILENAME_PREFIX, pt2.TENSOR_CONSTANT_FILENAME_PREFIX))
                        if pickled:
                            raise CheckpointError(f"{path} holds pickled objects ({entry.get('path_name')}); "
                                                  "refusing to load it")
            elif base.startswith(pt2.SAMPLE_INPUTS_DIR):
                torch.load(io.BytesIO(archive.read(name)), weights_only=True)   # raises on any pickled object


def is_program_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(f"extra/{META_FILE}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def save_program(program, meta: dict, path: Path) -> None:
    torch.export.save(program, path, extra_files={META_FILE: json.dumps(meta)})


def load_program(path: Path):
    """(program, metadata dict) from an archive that ``check_archive`` accepted."""
    extra = {META_FILE: ""}
    with open(path, "rb") as f:   # a file object: torch.export takes any name then, not only *.pt2
        program = torch.export.load(f, extra_files=extra)
    return program, validate.parse_json(extra[META_FILE])


def encode_tensor(t: torch.Tensor) -> dict:
    buffer = io.BytesIO()
    np.save(buffer, t.detach().cpu().numpy(), allow_pickle=False)
    return {"npy": base64.b64encode(buffer.getvalue()).decode()}


def decode_tensor(entry: dict) -> torch.Tensor:
    return torch.from_numpy(np.load(io.BytesIO(base64.b64decode(entry["npy"])), allow_pickle=False).copy())


def lod_layer_specs(model: nn.Module) -> dict[str, dict]:
    return {name: {"config": layer.config(), "active_rank": layer.active_rank}
            for name, layer in lod_layers(model).items()}
