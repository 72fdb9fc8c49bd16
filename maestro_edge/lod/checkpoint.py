"""LoD checkpoints: weights + everything ``fit`` needs, loadable without unpickling objects.

Two file formats, one loader:
- a user's model (``LoDCheckpoint.from_model``): a ``torch.export`` PT2 archive of the factorized model
  plus JSON metadata (lod/program.py), so it loads in any process without the user's code;
- a built-in architecture (``maestro-edge train``): a ``torch.save`` of plain dicts, lists, numbers,
  strings and tensors, read back with ``weights_only=True``; the model is rebuilt from its name.
A checkpoint carrying a pickled object is refused in both.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from maestro_edge import validate
from maestro_edge.errors import CheckpointError, MaestroError
from maestro_edge.lod import metadata
from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.lod.layers import lod_layers
from maestro_edge.lod import program as prog
from maestro_edge.models import build_model
from maestro_edge.user_files import write_atomic

FORMAT = "maestro-edge-lod"
SCHEMA_VERSION = 1
PROGRAM_FORMAT = "maestro-edge-lod-program"
ACCURACY = {"name": "accuracy", "higher_is_better": True}   # the built-in models' metric
MATCH_ATOL = 1e-4   # exported program vs the user's eager model, at save time
RETRAIN = "retrain it with 'maestro-edge train'"


@dataclass
class LoDCheckpoint:
    """A trained LoD model and its metadata."""

    model: nn.Module
    arch: dict                      # {"name": ..., "kwargs": {...}, "in_channels": ..., "num_classes": ...}
    data: dict                      # {"name": ..., "seed": ..., "input_shape": [...]}
    recipe: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    importance: dict = field(default_factory=dict)
    progress: dict = field(default_factory=dict)   # resumable training state (epochs done, ...)
    example_inputs: tuple = ()      # real inputs of the model (a user model's); empty: zeros of input_shape
    metric: dict = field(default_factory=lambda: dict(ACCURACY))   # {"name", "higher_is_better"}
    program: object = None          # the torch.export program of a user model (None: a built-in one)
    batch_norms: dict = field(default_factory=dict)   # a user model's BatchNorm configs (lod/program.py)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data["input_shape"])

    @property
    def examples(self) -> tuple[torch.Tensor, ...]:
        """Inputs the model takes (batch 1): what probes, export, timing and verification feed it."""
        return tuple(self.example_inputs) or (torch.zeros(self.input_shape),)

    @classmethod
    def from_model(cls, model: nn.Module, example_inputs, importance: dict | None = None,
                   name: str | None = None) -> "LoDCheckpoint":
        """A checkpoint of the user's factorized ``model`` that loads without the user's code.

        ``example_inputs``: a tensor or a tuple of tensors the model is called with (batch 1; any dtype,
        e.g. token ids and an attention mask). ``importance``: from ``importance_table`` (fit needs it).
        The model is exported with ``torch.export`` and rebuilt from the program at once; the rebuilt
        model must reproduce the eager outputs, so what is saved is checked before it is saved.
        """
        examples = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
        if not examples or not all(isinstance(x, torch.Tensor) for x in examples):
            raise MaestroError("example_inputs must be a tensor or a tuple of tensors (what the model is called with)")
        if not lod_layers(model):
            raise MaestroError("the model has no LoD layers; call maestro_edge.factorize_(model) first")
        layers, norms = prog.lod_layer_specs(model), prog.batch_norm_configs(model)
        was_training = model.training
        try:
            with torch.no_grad():
                model.eval()(*examples)
        except Exception as e:
            model.train(was_training)
            shapes = ", ".join(f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}" for x in examples)
            raise MaestroError(f"the model raised {type(e).__name__} on the example inputs ({shapes}): "
                               f"{' '.join(str(e).split())[:160]}; pass the inputs it is called with") from None
        try:
            program = prog.export_program(model, examples, [*layers, *norms])
        except Exception as e:
            raise MaestroError(f"torch.export could not capture the model: {type(e).__name__}: "
                               f"{' '.join(str(e).split())[:200]}") from None
        finally:
            model.train(was_training)
        rebuilt = prog.build_module(program, layers, norms)
        with torch.no_grad():
            model.eval()
            worst = max_output_difference(model(*examples), rebuilt(*examples))
            model.train(was_training)
        if not worst <= MATCH_ATOL:
            raise MaestroError(f"the exported program's outputs differ from the model's by {worst:.3g}; the model "
                               "does something torch.export cannot capture (data-dependent Python control flow?)")
        metric = dict((importance or {}).get("metric", ACCURACY))
        arch = {"name": name or type(model).__name__, "kind": "program"}
        data = {"name": "user", "input_shape": list(examples[0].shape)}
        return cls(model=rebuilt, arch=arch, data=data, importance=importance or {}, example_inputs=examples,
                   metric=metric, program=program, batch_norms=norms)

    def _sync_program_weights(self) -> None:
        """Put the live model's tensors (changed by recalibration or training since) into the program."""
        held = self.program.state_dict
        with torch.no_grad():
            for key, value in self.model.state_dict().items():
                if key in held:
                    if held[key].shape != value.shape:
                        raise MaestroError(f"{key} changed shape since export ({tuple(held[key].shape)} -> "
                                           f"{tuple(value.shape)}); make a new checkpoint with from_model")
                    held[key].copy_(value)

    def _program_layers(self) -> dict:
        return prog.lod_layer_specs(self.model)

    def _hash(self, arch: dict, tensor_bytes):
        """sha256 of the architecture, (for a program) the forward code, every tensor as ``tensor_bytes`` says
        and the active ranks: what digest and latency_digest share."""
        h = hashlib.sha256(json.dumps(arch, sort_keys=True).encode())
        if self.program is not None:   # the forward code: an edited forward is another model
            h.update(self.program.graph_module.code.encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor_bytes(tensor))
        for name, layer in lod_layers(self.model).items():
            h.update(f"{name}:{layer.active_rank}".encode())
        return h

    def digest(self) -> str:
        """Identifies these exact weights, architecture and (for a program) graph: keys plans (fit.json)."""
        return self._hash(self.arch, lambda t: t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]

    def latency_digest(self) -> str:
        """Identifies what the latency depends on: the architecture, the graph, every tensor's shape and dtype,
        the example inputs' shapes and the active ranks, not the weights' values (dense float kernels take as
        long whatever the numbers). Keys latency tables: a re-trained model (LoD, SVD of the same network, more
        epochs) reuses its architecture's table instead of being profiled again."""
        arch = {k: v for k, v in self.arch.items() if not (self.program is not None and k == "name")}
        h = self._hash(arch, lambda t: f":{tuple(t.shape)}:{t.dtype}".encode())
        for x in self.examples:
            h.update(f"example:{tuple(x.shape)}:{x.dtype}".encode())
        return "L" + h.hexdigest()[:15]

    def to_dict(self) -> dict:
        layers = {n: {"max_rank": l.max_rank, "active_rank": l.active_rank} for n, l in lod_layers(self.model).items()}
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "arch": self.arch, "data": self.data,
                "lod_layers": layers, "state_dict": self.model.state_dict(), "recipe": self.recipe,
                "metrics": self.metrics, "importance": self.importance, "progress": self.progress}

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        if self.program is not None:
            self._save_program(Path(path))
            return
        from maestro_edge.models import ARCHITECTURES

        if self.arch.get("name") not in ARCHITECTURES:   # it could not be rebuilt from its name on load
            raise MaestroError(f"architecture {self.arch.get('name')!r} is not built in; save your own model "
                               "with LoDCheckpoint.from_model(model, example_inputs, importance=...)")
        self.save_dict(self.to_dict(), path)

    def _save_program(self, path: Path) -> None:
        meta = {"format": PROGRAM_FORMAT, "schema_version": SCHEMA_VERSION, "arch": self.arch, "data": self.data,
                "lod_layers": self._program_layers(), "batch_norms": self.batch_norms,
                "importance": self.importance, "metric": self.metric, "metrics": self.metrics,
                "example_inputs": [prog.encode_tensor(x) for x in self.examples]}
        self._sync_program_weights()
        write_atomic(path, lambda f: prog.save_program(self.program, meta, f))

    @staticmethod
    def save_dict(blob: dict, path: str | Path) -> None:
        """Write a checkpoint's dict form atomically (``save``; ``lod.compact`` writes a reduced one)."""
        write_atomic(Path(path), lambda f: torch.save(blob, f))

    @classmethod
    def load(cls, path: str | Path) -> "LoDCheckpoint":
        path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"model path {str(path)!r} is a folder; pass a checkpoint file written by 'maestro-edge train'")
        if not path.is_file():
            raise CheckpointError(f"model file {str(path)!r} does not exist; pass a checkpoint written by 'maestro-edge train'")
        if prog.is_program_archive(path):
            return cls._load_program(path)
        try:
            with warnings.catch_warnings():   # torch warns about weights_only on the way to refusing a file
                warnings.simplefilter("ignore")
                blob = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "Unsupported global" in str(e):   # a pickled class or function, not a malformed file
                raise CheckpointError(f"{path} contains pickled Python objects; refusing to load it (only "
                                      "maestro-edge checkpoints of plain tensors are accepted): pass a checkpoint "
                                      "written by 'maestro-edge train'") from None
            raise CheckpointError(f"{path} is not a checkpoint (not a torch file); pass one written by "
                                  "'maestro-edge train'") from None
        except Exception:   # torch raises many types for files that are not its own (KeyError, RuntimeError...)
            raise CheckpointError(f"{path} is not a readable checkpoint (truncated, or another kind of file); "
                                  "pass a checkpoint written by 'maestro-edge train'") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not a maestro-edge LoD checkpoint; create one with 'maestro-edge train'")
        if blob.get("schema_version") != SCHEMA_VERSION:
            raise CheckpointError(f"{path} has checkpoint schema {validate.show(blob.get('schema_version'))}; this "
                                  f"maestro-edge reads {SCHEMA_VERSION}: retrain it with this version's 'maestro-edge "
                                  "train'")
        return cls.from_dict(blob, source=str(path))

    @classmethod
    def _load_program(cls, path: Path) -> "LoDCheckpoint":
        prog.check_archive(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program, meta = prog.load_program(path)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: its metadata ({prog.META_FILE}) is not valid JSON ({e.msg}); "
                                  f"{prog.SAVE_AGAIN}") from None
        except Exception as e:
            raise CheckpointError(f"{path} is not a readable model program ({type(e).__name__}); "
                                  f"{prog.SAVE_AGAIN}") from None
        if not isinstance(meta, dict) or meta.get("format") != PROGRAM_FORMAT or meta.get("schema_version") != SCHEMA_VERSION:
            raise CheckpointError(f"{path} has unknown metadata (format or schema); {prog.SAVE_AGAIN} (with this "
                                  "version of maestro-edge)")
        _check_metadata(metadata.check_program, meta, path, prog.SAVE_AGAIN)
        try:
            layers, norms = meta["lod_layers"], meta["batch_norms"]
            examples = tuple(prog.decode_tensor(x) for x in meta["example_inputs"])
            model = prog.build_module(program, layers, norms)
            for name, spec in layers.items():
                rank = spec["active_rank"]
                if not rank <= lod_layers(model)[name].max_rank:   # an int >= 1 (metadata.check_program)
                    raise ValueError(f"layer {name}: active_rank {rank!r} out of range")
            arch, data = dict(meta["arch"]), dict(meta["data"])
            if list(data.get("input_shape") or []) != list(examples[0].shape):   # what probes and estimates read
                raise ValueError(f"input_shape {data.get('input_shape')} is not the example inputs' "
                                 f"{list(examples[0].shape)}")
            importance, metric = dict(meta.get("importance") or {}), dict(meta.get("metric") or ACCURACY)
        except Exception as e:   # configs that do not fit the program, of any kind: one message
            raise _inconsistent(path, e, prog.SAVE_AGAIN) from None
        _refuse_non_finite(model.state_dict(), path, f"{prog.SAVE_AGAIN}, from a model whose weights are finite")
        return cls(model=model, arch=arch, data=data, metrics=dict(meta.get("metrics") or {}), importance=importance,
                   example_inputs=examples, metric=metric, program=program, batch_norms=norms)

    @classmethod
    def from_dict(cls, blob: dict, source: str = "<dict>") -> "LoDCheckpoint":
        _check_metadata(metadata.check_builtin, blob, source, RETRAIN)
        arch, layers, data = blob["arch"], blob["lod_layers"], blob["data"]
        _refuse_non_finite(blob["state_dict"], source, f"{RETRAIN} (--clip-grad-norm 5 or a lower --lr keeps "
                                                      "training from diverging)")
        try:   # on the meta device first: sizes and shapes are checked before anything is allocated or run
            with torch.device("meta"):
                shell = _built_in_model(arch, layers)
                _check_state_dict(shell, blob["state_dict"])
                shell.eval()(torch.zeros(data["input_shape"]))
        except Exception as e:   # untrusted architecture options can fail in any way: one message
            raise _inconsistent(source, e, RETRAIN) from None
        try:
            model = _built_in_model(arch, layers)
            model.load_state_dict(blob["state_dict"])
            for name, layer in lod_layers(model).items():
                active = layers[name]["active_rank"]
                if not active <= layer.max_rank:   # an int >= 1 (metadata.check_builtin)
                    raise ValueError(f"layer {name}: active_rank {active!r} is not in 1..{layer.max_rank}")
                layer.active_rank = active
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
            raise _inconsistent(source, e, RETRAIN) from None
        model.eval()
        return cls(model=model, arch=arch, data=data, recipe=blob.get("recipe", {}),
                   metrics=blob.get("metrics", {}), importance=blob.get("importance", {}),
                   progress=blob.get("progress", {}))


def _built_in_model(arch: dict, layers: dict) -> nn.Module:
    """The architecture, factorized as the checkpoint's ``lod_layers`` say; its weights are not loaded."""
    try:
        model = build_model(arch["name"], arch["in_channels"], arch["num_classes"], **arch.get("kwargs", {}))
    except MaestroError as e:
        raise ValueError(str(e)) from None
    overrides = {name: spec["max_rank"] for name, spec in layers.items()}
    # Layers the checkpoint kept dense stay dense: skip every name not listed.
    skip = {f"re:(?!({'|'.join(map(re.escape, layers))})$).*": "skip"} if layers else {"re:.*": "skip"}
    factorize_(model, FactorizeConfig(overrides={**overrides, **skip}), svd_init=False)
    return model


def _check_state_dict(model: nn.Module, state_dict: dict) -> None:
    """``state_dict`` has exactly the tensors of ``model`` (built on any device), with their shapes."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        parts = [f"{what} {names[:3]}" for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
        raise ValueError(f"the weights do not match the architecture: {', '.join(parts)}")
    for key, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[key].shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"weight {key!r} is {got}, the architecture's is {tuple(expected[key].shape)}")


def _refuse_non_finite(tensors: dict, source, fix: str) -> None:
    """Weights holding NaN or infinity (a training run that diverged) are refused at load, naming the first
    such tensor: found later, they look like an export that does not match PyTorch."""
    for key, tensor in tensors.items():
        if isinstance(tensor, torch.Tensor) and (tensor.is_floating_point() or tensor.is_complex()) \
                and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{source}: weight tensor {key!r} holds NaN or infinite values (did training "
                                  f"diverge?); {fix}")


def _check_metadata(check, blob: dict, source, fix: str) -> None:
    try:
        check(blob)
    except validate.FieldError as e:
        raise CheckpointError(f"{source}: malformed metadata: {e}; {fix}") from None


def _inconsistent(source, error: Exception, fix: str) -> CheckpointError:
    detail = " ".join(str(error).split())[:120]
    return CheckpointError(f"{source} is inconsistent ({type(error).__name__}: {detail}); {fix}")


def output_tensors(output) -> list[torch.Tensor]:
    """The tensors of a model output of any structure (a tensor, tuple, dict, HF ModelOutput), in order."""
    from torch.utils._pytree import tree_leaves

    if hasattr(output, "to_tuple"):   # HF ModelOutput
        output = output.to_tuple()
    return [leaf for leaf in tree_leaves(output) if isinstance(leaf, torch.Tensor)]


def max_output_difference(a, b) -> float:
    ta, tb = output_tensors(a), output_tensors(b)
    if len(ta) != len(tb) or any(x.shape != y.shape for x, y in zip(ta, tb)):
        return math.inf
    return max((float((x.float() - y.float()).abs().max()) for x, y in zip(ta, tb) if x.numel()), default=0.0)
