"""The README's "Your own model" snippet runs as written (with a small model and data standing in for the user's)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import maestro_edge as me

README = Path(__file__).parents[1] / "README.md"


def snippet() -> str:
    section = README.read_text().split("## Your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_snippet_is_short():
    assert len(snippet().strip().splitlines()) <= 15


def test_the_snippet_runs(tmp_path, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    y = (x.mean(dim=(1, 2, 3)) > 0).long()

    def my_trained_model():
        return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 15 * 15, 2))

    def score(model):
        with torch.no_grad():
            return (model.eval()(x).argmax(1) == y).float().mean().item()

    monkeypatch.chdir(tmp_path)
    namespace = {"my_trained_model": my_trained_model, "score": score,
                 "train_loader": list(zip(x.split(16), y.split(16)))}
    exec(compile(snippet(), "README.md", "exec"), namespace)
    ckpt = me.LoDCheckpoint.load(tmp_path / "my.lod")
    assert set(ckpt.importance["layers"]) == {"0", "3"}
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x[:4]), namespace["model"].eval()(x[:4]), atol=1e-5, rtol=0)
