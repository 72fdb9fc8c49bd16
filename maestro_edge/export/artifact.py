"""ExportArtifact: one file an export writes (model.pte, model.onnx, model.bpte), typed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePath


@dataclass(frozen=True)
class ExportArtifact:
    path: str                              # its name in the output folder, e.g. "model.pte"
    sha256: str
    size_bytes: int | None
    max_abs_error: float | None = None     # its outputs against eager PyTorch's (verification); None: not compared
    data: bytes | None = field(default=None, repr=False, compare=False)   # the bytes, until written

    @classmethod
    def of(cls, path: str, data: bytes, max_abs_error: float | None = None) -> "ExportArtifact":
        return cls(path, hashlib.sha256(data).hexdigest(), len(data), max_abs_error, data)

    @property
    def format(self) -> str:
        """"pte", "onnx" or "bpte": what runs it."""
        return PurePath(self.path).suffix[1:]

    def to_dict(self) -> dict:
        """Its entry in fit.json's "artifacts" (the error is in "verification")."""
        return {"path": self.path, "format": self.format, "sha256": self.sha256, "size_bytes": self.size_bytes}
