"""A write that fails midway (disk full) leaves no corrupt artifact and no temporary file behind."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from maestro_edge.errors import UsageError
from maestro_edge import user_files
from maestro_edge.user_files import write_json_atomic
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.outputs import check_output_folder, write_outputs


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_output_folder_is_all_or_nothing(tmp_path, monkeypatch):
    out = tmp_path / "fit"
    out.mkdir()
    (out / "fit.json").write_text('{"old": true}')
    calls = []
    real = Path.write_bytes

    def second_write_fails(self, data):
        calls.append(self.name)
        if len(calls) == 2:
            disk_full()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", second_write_fails)
    with pytest.raises(OSError):
        write_outputs(out, {"model.pte": b"a", "model.onnx": b"b"},
                      lambda folder: (folder / "fit.json").write_text("{}"))
    assert json.loads((out / "fit.json").read_text()) == {"old": True}   # the previous fit is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]        # no staging folder left


def test_json_is_replaced_atomically(tmp_path, monkeypatch):
    path = tmp_path / "table.json"
    path.write_text('{"v": 1}')
    monkeypatch.setattr(user_files.os, "replace", disk_full)   # the data is written; the rename fails
    with pytest.raises(OSError):
        write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch, tiny_checkpoint):
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    path = tmp_path / "lod.pt"
    ckpt.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError):
        ckpt.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lod.pt"]


def test_a_folder_of_someone_elses_files_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds other files"):
        check_output_folder(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
