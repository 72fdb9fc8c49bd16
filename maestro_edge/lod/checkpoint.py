"""LoD checkpoints: weights + everything ``fit`` needs, loadable without unpickling objects.

The file is a ``torch.save`` of plain dicts, lists, numbers, strings and tensors, read back with
``weights_only=True``, so a checkpoint carrying a pickled object is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from maestro_edge.errors import CheckpointError, MaestroError
from maestro_edge.latency.table import readable_mode
from maestro_edge.lod.factorize import FactorizeConfig, factorize_
from maestro_edge.lod.layers import lod_layers
from maestro_edge.models import build_model

FORMAT = "maestro-edge-lod"
SCHEMA_VERSION = 1


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

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.data["input_shape"])

    def digest(self) -> str:
        """Identifies these exact weights and architecture (keys latency tables and plans)."""
        h = hashlib.sha256(json.dumps(self.arch, sort_keys=True).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().contiguous().cpu().numpy().tobytes())
        for name, layer in lod_layers(self.model).items():
            h.update(f"{name}:{layer.active_rank}".encode())
        return h.hexdigest()[:16]

    def to_dict(self) -> dict:
        layers = {n: {"max_rank": l.max_rank, "active_rank": l.active_rank} for n, l in lod_layers(self.model).items()}
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "arch": self.arch, "data": self.data,
                "lod_layers": layers, "state_dict": self.model.state_dict(), "recipe": self.recipe,
                "metrics": self.metrics, "importance": self.importance, "progress": self.progress}

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, then a rename."""
        self.save_dict(self.to_dict(), path)

    @staticmethod
    def save_dict(blob: dict, path: str | Path) -> None:
        """Write a checkpoint's dict form atomically (``save``; ``lod.compact`` writes a reduced one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(blob, f)
            os.chmod(tmp, readable_mode())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "LoDCheckpoint":
        path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"model path {str(path)!r} is a folder; pass a checkpoint file written by 'maestro-edge train'")
        if not path.is_file():
            raise CheckpointError(f"model file {str(path)!r} does not exist; pass a checkpoint written by 'maestro-edge train'")
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
            raise CheckpointError(f"{path} has checkpoint schema {blob.get('schema_version')!r}; this maestro-edge "
                                  f"reads {SCHEMA_VERSION}: retrain it with this version's 'maestro-edge train'")
        return cls.from_dict(blob, source=str(path))

    @classmethod
    def from_dict(cls, blob: dict, source: str = "<dict>") -> "LoDCheckpoint":
        try:
            arch, layers, data = blob["arch"], blob["lod_layers"], blob["data"]
            if not isinstance(data, dict) or "name" not in data or "input_shape" not in data:
                raise KeyError("data")
            try:
                model = build_model(arch["name"], arch["in_channels"], arch["num_classes"], **arch.get("kwargs", {}))
            except MaestroError as e:
                raise ValueError(str(e)) from None
            overrides = {name: spec["max_rank"] for name, spec in layers.items()}
            # Layers the checkpoint kept dense stay dense: skip every name not listed.
            skip = {f"re:(?!({'|'.join(map(re.escape, layers))})$).*": "skip"} if layers else {"re:.*": "skip"}
            factorize_(model, FactorizeConfig(overrides={**overrides, **skip}), svd_init=False)
            model.load_state_dict(blob["state_dict"])
            for name, layer in lod_layers(model).items():
                active = layers[name]["active_rank"]
                if isinstance(active, bool) or not isinstance(active, int) or not 1 <= active <= layer.max_rank:
                    raise ValueError(f"layer {name}: active_rank {active!r} is not in 1..{layer.max_rank}")
                layer.active_rank = active
        except (KeyError, TypeError, RuntimeError, ValueError, AttributeError) as e:
            detail = " ".join(str(e).split())[:120]
            raise CheckpointError(f"{source} is inconsistent ({type(e).__name__}: {detail}); "
                                  "retrain it with 'maestro-edge train'") from None
        model.eval()
        return cls(model=model, arch=arch, data=data, recipe=blob.get("recipe", {}),
                   metrics=blob.get("metrics", {}), importance=blob.get("importance", {}),
                   progress=blob.get("progress", {}))

