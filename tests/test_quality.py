"""How fit scores models: the exported .pte on held-out images, a 95% interval and sample count with every
score, and the dense model's score stored once in the checkpoint (used only for the very same protocol)."""

from __future__ import annotations

import shutil

import pytest
import torch
from hypothesis import given, strategies as st

from maestro_edge.export.pte import export_pte
from maestro_edge.export.truncate import deployable
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.quality import DENSE_RECORDS, HeldOutAccuracy, store_dense_score, wilson_interval


@given(st.integers(min_value=1, max_value=100_000), st.data())
def test_the_interval_holds_the_observed_accuracy_and_narrows_with_more_samples(n, data):
    correct = data.draw(st.integers(min_value=0, max_value=n))
    low, high = wilson_interval(correct, n)
    assert 0.0 <= low <= correct / n <= high <= 1.0
    low4, high4 = wilson_interval(4 * correct, 4 * n)
    assert high4 - low4 <= high - low + 1e-12


def test_the_interval_at_84_percent_of_1000_images_is_about_2_points_each_way():
    low, high = wilson_interval(840, 1000)
    assert low == pytest.approx(0.816, abs=0.002) and high == pytest.approx(0.862, abs=0.002)


def test_the_exported_program_scores_what_the_eager_model_scores(tiny_checkpoint):
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    quality = HeldOutAccuracy(ckpt)
    small = deployable(ckpt.model, {name: 4 for name in ckpt.importance["layers"]})   # a real truncation
    quality.calibrate_(small)
    eager = quality.score(small)
    exported = quality.score(small, export_pte(small, ckpt.examples).buffer)
    assert exported.value == pytest.approx(eager.value, abs=1 / eager.samples)   # at most one image flips
    assert exported.loss == pytest.approx(eager.loss, rel=1e-3)
    assert exported.samples == len(quality.data.test_x) and "ExecuTorch" in exported.how
    assert exported.ci95[0] <= exported.value <= exported.ci95[1]


def test_a_stored_dense_score_is_used_for_the_same_protocol_only(tiny_checkpoint, tmp_path):
    path = tmp_path / "tiny.lod.pt"
    shutil.copy(tiny_checkpoint, path)
    before = torch.load(path, weights_only=True)
    stored = store_dense_score(str(path))
    after = torch.load(path, weights_only=True)
    # nothing but the record changed: same tensors, same dtypes, same digest
    assert after["state_dict"].keys() == before["state_dict"].keys()
    assert all(torch.equal(after["state_dict"][k], v) and after["state_dict"][k].dtype == v.dtype
               for k, v in before["state_dict"].items())
    ckpt = LoDCheckpoint.load(path)
    assert ckpt.digest() == LoDCheckpoint.load(tiny_checkpoint).digest()

    reused = HeldOutAccuracy(ckpt).dense()
    assert (reused.value, reused.samples, reused.ci95) == (stored.value, stored.samples, stored.ci95)
    assert reused.how.endswith("stored in the checkpoint")

    # another protocol (other images or recalibration) or a malformed record: measured again, never trusted
    key = HeldOutAccuracy(ckpt).protocol_key
    for records in ({"another-protocol": after["metrics"][DENSE_RECORDS][key]}, {key: {"value": "high"}}):
        ckpt.metrics[DENSE_RECORDS] = records
        measured = HeldOutAccuracy(ckpt).dense()
        assert "stored" not in measured.how and measured.value == pytest.approx(stored.value)


def test_a_user_model_has_no_stored_dense_score_and_its_file_is_untouched(tmp_path):
    import maestro_edge as me
    from maestro_edge.errors import UsageError

    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    me.factorize_(net)
    x = torch.randn(1, 16)
    table = me.importance_table(net, lambda m: float(-m(x).square().mean()), x)
    path = tmp_path / "user.lod"
    me.LoDCheckpoint.from_model(net, x, importance=table).save(path)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="user model"):
        store_dense_score(str(path))
    assert path.read_bytes() == before
