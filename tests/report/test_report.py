"""write_report: reading a sweep, the page's content, its errors, and the page rendered in headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from maestro_edge.errors import MaestroError, UsageError
from maestro_edge.report import load_fits, write_report
from maestro_edge.report.html import GENERATOR
from maestro_edge import user_files

from .conftest import fit_record, sweep_records, write_fit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OLD_REPORT = f"<!DOCTYPE html><html><head>{GENERATOR}</head><body>old report</body></html>"


@pytest.fixture
def mpl():
    """write_report draws with matplotlib (the 'report' extra): skip without it, except under CI."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        message = "matplotlib is not installed; pip install 'maestro-edge[report]'"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip the report tests)")
        pytest.skip(message)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.tmp")]


# -- reading the sweep ---------------------------------------------------------------------------------

def test_load_fits_reads_every_fit_sorted_and_skips_staging_folders(sweep):
    # an interrupted fit leaves its staging folder .<name>.tmpXXXX behind: not a fit of the sweep
    staging = sweep / ".host-0.2ms.tmpab12"
    staging.mkdir()
    (staging / "fit.json").write_text("{")
    fits = load_fits(sweep)
    assert [(f.device, f.budget_ms) for f in fits] == [("host", 0.1), ("host", 0.15), ("host", 0.3),
                                                       ("rpi4", 1.5), ("rpi4", 3.0)]
    host, rpi4 = fits[1], fits[3]
    assert host.is_measured and host.latency_ms == pytest.approx(0.149232)
    assert not rpi4.is_measured and rpi4.latency_ms == pytest.approx(1.4712)
    assert host.ranks["features.0.0"] == "dense" and host.ranks["features.3.0"] == 184
    assert host.label == "host-0.15ms" and host.threads == 1 and rpi4.runtime == "onnxruntime"
    assert len(fits[0].baselines) == 3 and fits[0].max_ranks["features.3.0"] == 576
    assert rpi4.baselines == [] and rpi4.max_ranks == {}


def test_load_fits_accepts_a_folder_that_is_itself_one_fit(tmp_path):
    path = write_fit(tmp_path, sweep_records()[1])
    [fit] = load_fits(path.parent)
    assert fit.label == "." and fit.device == "host"


# -- the page ------------------------------------------------------------------------------------------

def test_write_report_writes_one_self_contained_page_and_nothing_else(sweep, mpl):
    before = sorted(p.name for p in sweep.iterdir())
    out = write_report(sweep)
    assert out == sweep / "report.html"
    page = out.read_text(encoding="utf-8")
    assert sorted(p.name for p in sweep.iterdir()) == sorted([*before, "report.html"])   # no PNG beside it
    assert stat.S_IMODE(out.stat().st_mode) & 0o044
    assert leftovers(sweep) == []

    # self-contained: three embedded PNGs, nothing fetched from anywhere (the CSP also forbids it)
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert page.count(GENERATOR) == 1
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "default-src 'none'" in page

    # every fit in the table, with its device context and both latencies labelled measured or estimated
    table = page[page.index('<table id="fits">'):]
    rows = re.findall(r"<tr><td>.*?</tr>", table, flags=re.S)
    assert len(rows) == 5
    for row in rows:
        assert 'class="tag estimated"' in row                # the prediction is always an estimate
        assert ('class="tag measured"' in row) != ("not measured" in row)
    assert sum("not measured" in r for r in rows) == 2 and all("rpi4" in r for r in rows if "not measured" in r)
    assert "executorch-xnnpack<br>1 thread" in rows[0] and "onnxruntime<br>4 threads" in rows[3]
    assert "0.1499 ms" in rows[1] and "0.1492 ms" in rows[1] and "98.05%" in rows[1] and "97.77%" in rows[1]
    record = json.loads((sweep / "host-0.15ms" / "fit.json").read_text())
    for artifact in record["artifacts"]:
        assert artifact["sha256"][:12] in rows[1]
    assert "2.78 MB" in rows[1] and "2.80 MB" in rows[1]
    assert "host · executorch-xnnpack · 1 thread" in page and "rpi4 · onnxruntime · 4 threads" in page


def test_write_report_to_another_file_or_folder(sweep, tmp_path, mpl):
    target = tmp_path / "site" / "sweep.html"
    assert write_report(sweep, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["sweep.html"]
    assert not (sweep / "report.html").exists()
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert write_report(sweep, folder) == folder / "report.html"


def test_minimal_fit_without_optional_fields_or_any_measurement(tmp_path, mpl):
    record = fit_record("rpi5", 2.0, runtime="onnxruntime", threads=4, latency_source="estimated",
                        predicted_ms=1.93, measured_ms=None, accuracy=0.97,
                        ranks={"features.3.0": 64, "classifier.1": "dense"})
    for key in ("tries", "verification", "artifacts", "wall_time_s", "estimated_accuracy_drop", "test_loss"):
        record.pop(key)
    folder = tmp_path / "out" / "rpi5-2ms"
    folder.mkdir(parents=True)
    (folder / "fit.json").write_text(json.dumps(record))
    page = write_report(tmp_path / "out").read_text()
    assert "none listed" in page and "not measured" in page
    assert "0 measured on the device, 1 estimated only" in page


def test_text_from_fit_json_is_escaped(tmp_path, mpl):
    record = sweep_records()[1]
    record["runtime"] = "<script>alert(1)</script>"
    write_fit(tmp_path, record)
    page = write_report(tmp_path).read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


# -- errors --------------------------------------------------------------------------------------------

def assert_one_line(error: MaestroError, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_folder(tmp_path):
    with pytest.raises(UsageError) as e:
        write_report(tmp_path / "nope")
    assert_one_line(e.value, str(tmp_path / "nope"), "does not exist")


def test_a_file_instead_of_a_folder(tmp_path):
    path = write_fit(tmp_path, sweep_records()[0])
    with pytest.raises(UsageError) as e:
        write_report(path)
    assert_one_line(e.value, str(path), "not a folder")


def test_no_fit_json(tmp_path):
    (tmp_path / "host-0.15ms").mkdir()
    (tmp_path / "host-0.15ms" / "model.pte").write_bytes(b"x")
    with pytest.raises(UsageError) as e:
        write_report(tmp_path)
    assert_one_line(e.value, "no fit.json found", str(tmp_path), "maestro-edge fit")
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("mutate, fragment", [
    (lambda path, r: path.write_text(json.dumps(r)[:200]), "not valid JSON"),
    (lambda path, r: path.write_bytes(b"\xff\xfe\x00garbage"), "not"),
    (lambda path, r: path.write_text("[1, 2]"), "not an object"),
    (lambda path, r: path.write_text(json.dumps({**r, "schema_version": 7})), "schema_version 7"),
    (lambda path, r: path.write_text(json.dumps({k: v for k, v in r.items() if k != "accuracy"})), "'accuracy'"),
    (lambda path, r: path.write_text(json.dumps({**r, "predicted_ms": "fast"})), "predicted_ms"),
    (lambda path, r: path.write_text(json.dumps({**r, "ranks": {"classifier.1": 0}})), "classifier.1"),
    (lambda path, r: path.write_text(json.dumps({**r, "measured_ms": float("nan")})), "measured_ms"),
], ids=["truncated", "binary", "array", "schema", "missing-field", "bad-number", "bad-rank", "nan"])
def test_a_corrupt_fit_json_names_the_file(sweep, mutate, fragment):
    (sweep / "report.html").write_text(OLD_REPORT)
    bad = sweep / "rpi4-3ms" / "fit.json"
    mutate(bad, json.loads(bad.read_text()))
    with pytest.raises(MaestroError) as e:
        write_report(sweep)
    assert_one_line(e.value, str(bad), fragment)
    assert "re-run" in str(e.value)
    assert (sweep / "report.html").read_text() == OLD_REPORT


def test_an_interrupted_write_keeps_the_old_report(sweep, monkeypatch, mpl):
    (sweep / "report.html").write_text(OLD_REPORT)
    real_replace = os.replace

    def failing_replace(src, dst):
        if Path(dst).name == "report.html":
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(user_files.os, "replace", failing_replace)
    with pytest.raises(MaestroError) as e:
        write_report(sweep)
    assert_one_line(e.value, str(sweep / "report.html"), "No space left on device")
    assert (sweep / "report.html").read_text() == OLD_REPORT
    assert leftovers(sweep) == []


def test_files_beside_the_report_are_never_touched(sweep, tmp_path, mpl):
    # issue 16: report --out dir/summary.html used to write pareto.png, ranks.png, latency.png over the user's
    site = tmp_path / "site"
    site.mkdir()
    mine = {name: f"my {name}".encode() for name in ("pareto.png", "ranks.png", "latency.png", "index.html")}
    for name, blob in mine.items():
        (site / name).write_bytes(blob)
    write_report(sweep, site / "summary.html")
    assert {p.name: p.read_bytes() for p in site.iterdir() if p.name != "summary.html"} == mine


def test_a_report_of_ours_is_replaced_but_no_other_file(sweep, tmp_path, mpl):
    out = write_report(sweep)
    out.write_text(OLD_REPORT)
    assert write_report(sweep) == out and "old report" not in out.read_text()   # ours: written again
    legacy = tmp_path / "legacy.html"    # a report from before the generator tag: known by its title
    legacy.write_text("<!DOCTYPE html>\n<html><head><title>maestro-edge report: out</title></head></html>")
    write_report(sweep, legacy)
    assert GENERATOR in legacy.read_text()

    for text in ("my notes", "<html><head><title>My report</title></head></html>", ""):
        notes = tmp_path / "notes.html"
        notes.write_text(text)
        with pytest.raises(UsageError) as e:
            write_report(sweep, notes)
        assert_one_line(e.value, str(notes), "not a maestro-edge report", "pass another --out")
        assert notes.read_text() == text


def test_a_symlinked_or_dangling_out_is_refused(sweep, tmp_path):
    target = tmp_path / "real.html"
    target.write_text(OLD_REPORT)
    for link, points_to in (("link.html", target), ("dangling.html", tmp_path / "gone.html")):
        (tmp_path / link).symlink_to(points_to)
        with pytest.raises(UsageError) as e:
            write_report(sweep, tmp_path / link)
        assert_one_line(e.value, link, "symbolic link", "give another path")
        assert (tmp_path / link).is_symlink() and os.readlink(tmp_path / link) == str(points_to)
    assert target.read_text() == OLD_REPORT and not (tmp_path / "gone.html").exists()


# -- rendered in a browser -----------------------------------------------------------------------------

def chromium_args(chromium: str, profile: Path) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=5000"]


def test_the_page_renders_in_headless_chromium(sweep, tmp_path, chromium, mpl):
    page = write_report(sweep)
    url = page.resolve().as_uri()
    shot = tmp_path / "shot.png"
    # the two runs are independent: start both, then wait (each takes about a second)
    dump = subprocess.Popen(chromium_args(chromium, tmp_path / "p1") + ["--dump-dom", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    snap = subprocess.Popen(chromium_args(chromium, tmp_path / "p2") + ["--window-size=1200,3000",
                            f"--screenshot={shot}", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dom, dom_err = dump.communicate(timeout=90)
    _, snap_err = snap.communicate(timeout=90)
    assert dump.returncode == 0, dom_err.decode(errors="replace")[-2000:]
    assert snap.returncode == 0, snap_err.decode(errors="replace")[-2000:]

    # the page's script ran after load and found every embedded PNG decoded (naturalWidth > 0)
    body = re.search(r"<body[^>]*>", dom.decode())
    assert body, dom[:500]
    assert 'data-images-total="3"' in body.group(0) and 'data-images-loaded="3"' in body.group(0), body.group(0)

    # and the screenshot is a page, not a blank: lots of ink, in many colours (the plots' colour maps)
    import numpy as np
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        pixels = np.asarray(im.convert("RGB"), dtype=np.int32)
    ink = float((pixels.sum(axis=2) < 720).mean())
    colours = len(np.unique((pixels // 16).reshape(-1, 3), axis=0))
    assert ink > 0.05, f"screenshot nearly blank ({ink:.1%} non-white)"
    assert colours > 40, f"screenshot has only {colours} colours"
