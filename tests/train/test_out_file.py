"""train --out: an existing file that is not a checkpoint is never trained over (refused before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro_edge.errors import UsageError
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.train.loop import Recipe
from maestro_edge.train.run import _existing_checkpoint, train_checkpoint

DIGITS = Path(__file__).resolve().parents[1] / "fixtures" / "digits.lod.pt"


@pytest.mark.parametrize("content", [b"my notes\n", b"", b"PK\x03\x04 a zip, not ours", DIGITS.read_bytes()[:4096]])
def test_a_file_that_is_not_a_checkpoint_is_refused_and_kept(tmp_path, content):
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    for resume in (True, False):
        with pytest.raises(UsageError) as e:
            train_checkpoint("small_cnn", "digits", Recipe(epochs=1), out, resume=resume, limit=64)
        message = str(e.value)
        assert "\n" not in message and "not a maestro-edge checkpoint" in message, message
        assert "pass a new path with --out, or delete that file" in message
        assert out.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_checkpoint_is_not_refused(tmp_path):
    assert _existing_checkpoint(tmp_path / "new.pt") is None
    assert isinstance(_existing_checkpoint(DIGITS), LoDCheckpoint)   # finished: trained over, as before
