"""lod.compact: the shipped checkpoint keeps the model's function, drops the resumable state."""

from __future__ import annotations

import torch

from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.compact import main
from maestro_edge.lod.layers import lod_layers


def test_compact_cuts_factors_to_active_ranks_and_stores_fp16(tmp_path, tiny_checkpoint):
    trained = LoDCheckpoint.load(tiny_checkpoint)
    name, layer = next(iter(lod_layers(trained.model).items()))
    layer.active_rank = max(1, layer.max_rank // 2)          # as if shrinking had dropped half of it
    source = tmp_path / "trained.pt"
    trained.progress["optimizer"] = {"state": {}}              # resumable state that must not ship
    trained.save(source)
    assert main([str(source), str(tmp_path / "shipped.pt"), "--fp16"]) == 0

    shipped = LoDCheckpoint.load(tmp_path / "shipped.pt")
    assert lod_layers(shipped.model)[name].max_rank == layer.active_rank
    assert "optimizer" not in shipped.progress and shipped.metrics["stored_dtype"] == "float16"
    blob = torch.load(tmp_path / "shipped.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in blob["state_dict"].values() if v.is_floating_point())
    x = torch.randn(4, *trained.input_shape[1:])
    with torch.no_grad():
        assert torch.allclose(shipped.model(x), LoDCheckpoint.load(source).model(x), atol=2e-2)


def test_compact_refuses_an_unfinished_run(tmp_path, tiny_checkpoint, capsys):
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    ckpt.progress["complete"] = False
    ckpt.save(tmp_path / "running.pt")
    assert main([str(tmp_path / "running.pt"), str(tmp_path / "out.pt")]) == 2
    assert "unfinished" in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


def test_compact_refuses_an_output_it_must_not_write(tmp_path, capsys):
    """Checked before the trained checkpoint is loaded: one line, exit 2, nothing written or replaced."""
    trained = tmp_path / "trained.pt"
    trained.write_bytes(b"not even read")
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "link.pt").symlink_to(tmp_path / "gone.pt")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()}
    for shipped, fragment in [("notes.txt", "not a maestro-edge checkpoint"), ("trained.pt", "itself"),
                              ("afile/shipped.pt", "which is a file"), ("x" * 300, "too long"),
                              ("link.pt", "symbolic link")]:
        assert main([str(trained), str(tmp_path / shipped)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and err.count("\n") == 1 and fragment in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.is_symlink()} == before
