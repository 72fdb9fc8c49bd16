"""The bad-input catalogue (issue #6; the table in docs/errors.md lists the same cases by id).

The rule every case checks: bad input gets exactly ONE line on stderr, starting with "Error: ", that says
what is wrong AND what to do; a non-zero exit code (2 for usage errors); no traceback; no Python
warning on stderr; nothing on stdout; and no output left behind: every file under the test's folder
(the working directory, so default outputs land there too) and under the shared bad-input folder is
unchanged afterwards.

A case that breaks the rule is a bug to fix in the CLI, not a mark to add here.
Nothing here profiles the host: devices are ``pixel7`` (estimated) or profile files of an estimated
device, and models are the session's tiny checkpoint or broken copies of it.

Cases already covered by tests/cli/test_bad_input.py (budgets 0/-3/nan/inf/abc/"10,,20"/"10,-1",
unknown device, missing/empty/garbage/pickled/other-torch model, --out is a file, budget below the
fastest model, table for another model, corrupt tables, plans for another model, bad plans) are
not repeated here.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import traceback
import warnings
from pathlib import Path

import pytest
import torch

from maestro_edge.cli import main

# A message "says what to do" when it holds one of these (imperatives, or the allowed values).
ACTION = re.compile(
    r"\b(pass|use|run|re-run|rerun|add|fix|delete|remove|choose|raise|give|retrain|re-download|reinstall|install|"
    r"create|repeat|check|set|unset|see|profile again|profile this|expected one of|must|is not in|"
    r"known devices|did you mean)\b", re.IGNORECASE)


# -- running the CLI in-process, the way a user would see it ---------------------------------------------

def _python_default_warning_filters() -> None:
    """The filters a plain ``python`` process starts with (pytest's own filters would hide warnings)."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``maestro-edge argv``; an escaping exception counts as a traceback
    (exit 1) and Python warnings count as stderr lines, as they would in a real process."""
    tb = ""
    with warnings.catch_warnings(record=True) as caught:
        _python_default_warning_filters()
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = 0 if e.code is None else e.code
        except Exception:   # what the console script would print as a traceback
            code, tb = 1, traceback.format_exc()
    out, err = capsys.readouterr()
    err += tb + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
    return code, out, err


def error_lines(err: str) -> list[str]:
    """stderr lines that are not progress (progress lines start with two spaces)."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("  ")]


def assert_one_line_error(code, out: str, err: str, words=(), expected_code=None) -> str:
    assert "Traceback" not in err, err
    assert code != 0, f"exit code 0 for bad input; stdout={out!r} stderr={err!r}"
    if expected_code is not None:
        assert code == expected_code, (code, err)
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("Error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert ACTION.search(line), f"the message does not say what to do: {line!r}"
    assert out == "", f"stdout should be empty on error, got {out!r}"
    return line


def snapshot(*roots: Path) -> dict:
    """Every file and folder under ``roots`` with its size and mtime: what 'nothing written' compares."""
    seen = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath, name)
                st = p.lstat()
                seen[str(p)] = (p.is_dir(), st.st_size, st.st_mtime_ns)
    return seen


# -- the bad inputs, built once per session from the tiny checkpoint ---------------------------------------

GOOD_PROFILE = Path(__file__).resolve().parents[2] / "profiles" / "pixel7.toml"


def _profile_variant(text: str, key: str, value: str | None) -> str:
    """pixel7.toml with top-level ``key`` set to ``value`` (a TOML literal) or removed (None)."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    assert pattern.search(text), key
    return pattern.sub("" if value is None else f"{key} = {value}", text, count=1)


@pytest.fixture(scope="session")
def bad(tmp_path_factory, tiny_checkpoint) -> Path:
    from maestro_edge.devices.profile import find_profile
    from maestro_edge.latency.profile import estimated_table
    from maestro_edge.lod.checkpoint import LoDCheckpoint

    root = tmp_path_factory.mktemp("bad-inputs")

    # device profiles
    p = root / "profiles"
    p.mkdir()
    good = GOOD_PROFILE.read_text()
    (p / "malformed.toml").write_text('schema_version = 1\nname = "unterminated\n')
    (p / "wrong_schema.toml").write_text('[device]\nmodel = "Pixel 7"\n')
    (p / "no_runtime.toml").write_text(_profile_variant(good, "runtime", None))
    (p / "bad_runtime.toml").write_text(_profile_variant(good, "runtime", '"tflite"'))
    (p / "threads0.toml").write_text(_profile_variant(good, "threads", "0"))
    (p / "threads_str.toml").write_text(_profile_variant(good, "threads", '"four"'))
    (p / "schema2.toml").write_text(_profile_variant(good, "schema_version", "2"))
    (p / "bad_transport.toml").write_text(_profile_variant(good, "transport", '"carrier-pigeon"'))
    (p / "empty_name.toml").write_text(_profile_variant(good, "name", '""'))
    (p / "hardware_int.toml").write_text(_profile_variant(good, "precision", '"fp32"\nhardware = 5').replace(
        "[hardware]", "[hardware_unused]").replace("[[hardware.cores]]", "[[hardware_unused.cores]]"))
    # the peak is derived from [[hardware.cores]]: a negative clock in the table is the negative-peak case now
    (p / "neg_peak.toml").write_text(_profile_variant(good, "clock_ghz", "-5"))
    (p / "target_password.toml").write_text(good + '\n[target]\nhost = "pi@rpi5"\npassword = "hunter2"\n')
    (p / "not_utf8.toml").write_bytes(b"\xff\xfe\x00 not text")
    (root / "profiles_one_bad").mkdir()
    (root / "profiles_one_bad" / "pixel7.toml").write_text(good)
    (root / "profiles_one_bad" / "threads0.toml").write_text(_profile_variant(good, "threads", "0"))
    (root / "profiles_hw_int").mkdir()
    (root / "profiles_hw_int" / "odd.toml").write_text((p / "hardware_int.toml").read_text())

    # checkpoints
    c = root / "ckpt"
    c.mkdir()
    raw = Path(tiny_checkpoint).read_bytes()
    (c / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (c / "notes.txt").write_text("hello, these are my notes\n")
    (c / "config.json").write_text('{"arch": "small_cnn"}\n')
    (c / "plain.pkl").write_bytes(pickle.dumps({"format": "maestro-edge-lod"}, protocol=4))
    blob = torch.load(tiny_checkpoint, weights_only=True)

    def variant(name, **changes):
        b = copy.deepcopy(blob)
        for key, value in changes.items():
            if value is None:
                b.pop(key)
            else:
                b[key] = value
        torch.save(b, c / name)

    sd = dict(blob["state_dict"])
    first = next(iter(sd))
    variant("schema2.pt", schema_version=2)
    variant("bad_shape.pt", state_dict={**sd, first: torch.zeros(3)})
    variant("missing_key.pt", state_dict={k: v for k, v in sd.items() if k != first})
    variant("unknown_arch.pt", arch={**blob["arch"], "name": "transformer9000"})
    variant("bad_arch_kwargs.pt", arch={**blob["arch"], "kwargs": {"bogus": 1}})
    variant("no_data.pt", data=None)
    variant("unknown_data.pt", data={**blob["data"], "name": "imagenet-offline"})
    variant("no_importance.pt", importance={})
    variant("active_rank0.pt", lod_layers={k: {**v, "active_rank": 0} for k, v in blob["lod_layers"].items()})
    variant("active_rank_big.pt",
            lod_layers={k: {**v, "active_rank": v["max_rank"] * 1000} for k, v in blob["lod_layers"].items()})
    (c / "a_folder.pt").mkdir()

    # latency tables (for the tiny checkpoint on pixel7)
    t = root / "tables"
    t.mkdir()
    ckpt = LoDCheckpoint.load(tiny_checkpoint)
    table = estimated_table(ckpt, find_profile("pixel7")).to_dict()
    layer = next(iter(table["layers"]))

    def table_variant(name, change):
        d = copy.deepcopy(table)
        change(d)
        (t / name).write_text(json.dumps(d))

    table_variant("other_device.json", lambda d: d.update(device="rpi5"))
    table_variant("negative.json", lambda d: d["layers"][layer].update(dense_ms=-1.0))
    table_variant("nan.json", lambda d: d.update(overhead_ms=float("nan")))
    table_variant("no_time.json", lambda d: d.update(overhead_ms=-1e6))
    table_variant("schema2.json", lambda d: d.update(schema_version=2))
    table_variant("missing_layer.json", lambda d: d["layers"].pop(layer))
    table_variant("threads0.json", lambda d: d.update(threads=0))
    table_variant("bad_rank_key.json", lambda d: d["layers"][layer].update(rank_ms={"four": 0.1}))
    (t / "a_folder").mkdir()

    # plans (for export)
    pl = root / "plans"
    pl.mkdir()
    ranks = {name: max(1, spec["active_rank"] // 2) for name, spec in blob["lod_layers"].items()}
    (pl / "valid.json").write_text(json.dumps({"ranks": ranks}))
    (pl / "bool_rank.json").write_text(json.dumps({"ranks": {**ranks, layer: True}}))
    (pl / "big_rank.json").write_text(json.dumps({"ranks": {**ranks, layer: 100000}}))
    (pl / "ranks_list.json").write_text(json.dumps({"ranks": list(ranks)}))
    (pl / "one_layer.json").write_text(json.dumps({"ranks": {layer: ranks[layer]}}))
    (pl / "a_folder").mkdir()

    # output paths that are links
    links = root / "links"
    (links / "folder").mkdir(parents=True)
    (links / "to_folder").symlink_to(links / "folder")
    (links / "dangling").symlink_to(links / "gone")

    # report folders
    r = root / "reports"
    fit = {"schema_version": 1, "device": "pixel7", "budget_ms": 20, "predicted_ms": 1.0, "measured_ms": None,
           "latency_source": "estimated", "runtime": "executorch-xnnpack", "threads": 4, "accuracy": 0.9,
           "dense_accuracy": 0.9, "ranks": ranks}
    for name, text in {"good": json.dumps(fit), "corrupt": '{"device": "pixel7", "ranks": {',
                       "list": "[1, 2, 3]", "schema2": json.dumps({**fit, "schema_version": 2}),
                       "incomplete": json.dumps({"schema_version": 1, "device": "pixel7"}),
                       "huge-budget": json.dumps({**fit, "budget_ms": 1e308}),
                       "accuracy-57": json.dumps({**fit, "accuracy": 57, "metric": {"name": "accuracy"}}),
                       "rank-above-max": json.dumps({**fit, "ranks": {**ranks, layer: 10 ** 6},
                                                     "max_ranks": {layer: 8}})}.items():
        (r / name / "pixel7-20ms").mkdir(parents=True)
        (r / name / "pixel7-20ms" / "fit.json").write_text(text)
    (r / "empty").mkdir()
    return root


# -- the catalogue ----------------------------------------------------------------------------------------
# argv placeholders: {ckpt} tiny checkpoint, {bad} the bad-input folder, {out} a path that must not appear,
# {file} an existing file ("precious") that must stay unchanged, {tmp} the test's folder (also the cwd).

FIT = ["fit", "--device", "pixel7", "--ms", "20", "--out", "{out}"]
FIT_TINY = [*FIT, "--model", "{ckpt}"]
FAST = ["fit", "--device", "pixel7", "--ms", "0.00001", "--model", "{ckpt}", "--out", "{out}"]   # below any model
EXPORT = ["export", "--model", "{ckpt}", "--out", "{out}", "--plan"]


def case(id, argv, words=(), code=None, env=None, slow=False, absent=()):
    """One row of docs/errors.md. words: must be in the error line; absent: must not be (secrets);
    code: the exact exit code (2 = usage error), None = any non-zero."""
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(argv, tuple(words), tuple(absent), code, env or {}, id=id, marks=marks)


CATALOGUE = [
    # --- commands and options (every command) ---
    case("unknown-command", ["deploy"], ["deploy"], 2),
    case("unknown-global-option", ["--debug", "devices"], ["--debug"], 2),
    case("no-command", [], ["command"], 2),
    case("devices-unknown-option", ["devices", "--all"], ["--all", "devices --help"], 2),
    case("train-missing-out", ["train"], ["--out"], 2),
    case("profile-missing-device", ["profile"], ["--device"], 2),
    case("fit-missing-ms", ["fit", "--device", "pixel7"], ["--ms"], 2),
    case("fit-option-without-value", ["fit", "--ms", "20", "--device"], ["--device"], 2),
    case("export-missing-plan", ["export", "--out", "{out}"], ["--plan"], 2),
    case("report-extra-argument", ["report", "{bad}/reports/good", "{bad}/reports/empty"], ["unexpected extra"], 2),
    # --- budgets (beyond test_bad_input) ---
    case("ms-empty", ["fit", "--device", "pixel7", "--ms", "", "--out", "{out}"], ["not a number"], 2),
    case("ms-with-unit", ["fit", "--device", "pixel7", "--ms", "20ms", "--out", "{out}"], ["20ms", "not a number"], 2),
    case("ms-overflow", ["fit", "--device", "pixel7", "--ms", "1e400", "--out", "{out}"], ["positive", "finite"], 2),
    case("out-empty", ["fit", "--device", "pixel7", "--ms", "20", "--out", ""], ["current folder", "--out out"], 2),
    case("out-parent-of-cwd", ["fit", "--device", "pixel7", "--ms", "20", "--out", ".."], ["current folder"], 2),
    case("ms-twice", ["fit", "--device", "pixel7", "--ms", "0.3,0.30", "--out", "{out}"], ["twice", "give it once"], 2),
    case("ms-underscore", ["fit", "--device", "pixel7", "--ms", "1_0", "--out", "{out}"], ["1_0", "not a number"], 2),
    # --- device names and profile files ---
    case("device-empty-name", ["fit", "--device", "", "--ms", "20", "--out", "{out}"], ["unknown device", "pixel7"], 2),
    case("device-toml-not-found", ["fit", "--device", "pixel7.toml", "--ms", "20", "--out", "{out}"], ["pixel7.toml"]),
    case("device-path-is-folder", ["fit", "--device", "{bad}/profiles", "--ms", "20", "--out", "{out}"], ["profiles"]),
    case("profile-malformed-toml", ["fit", "--device", "{bad}/profiles/malformed.toml", "--ms", "20", "--out", "{out}"],
         ["malformed.toml", "not valid TOML"], 1),
    case("profile-not-utf8", ["fit", "--device", "{bad}/profiles/not_utf8.toml", "--ms", "20", "--out", "{out}"],
         ["not_utf8.toml", "not text"], 1),
    case("profile-wrong-schema", ["fit", "--device", "{bad}/profiles/wrong_schema.toml", "--ms", "20", "--out", "{out}"],
         ["wrong_schema.toml", "schema_version"], 1),
    case("profile-schema-version-2", ["fit", "--device", "{bad}/profiles/schema2.toml", "--ms", "20", "--out", "{out}"],
         ["schema2.toml", "schema_version 2"], 1),
    case("profile-missing-key", ["fit", "--device", "{bad}/profiles/no_runtime.toml", "--ms", "20", "--out", "{out}"],
         ["no_runtime.toml", "'runtime'"], 1),
    case("profile-bad-runtime", ["fit", "--device", "{bad}/profiles/bad_runtime.toml", "--ms", "20", "--out", "{out}"],
         ["tflite", "executorch-xnnpack"], 1),
    case("profile-bad-transport",
         ["fit", "--device", "{bad}/profiles/bad_transport.toml", "--ms", "20", "--out", "{out}"],
         ["carrier-pigeon", "ssh"], 1),
    case("profile-threads-0", ["fit", "--device", "{bad}/profiles/threads0.toml", "--ms", "20", "--out", "{out}"],
         ["threads0.toml", "'threads'", ">= 1"], 1),
    case("profile-threads-string", ["fit", "--device", "{bad}/profiles/threads_str.toml", "--ms", "20", "--out", "{out}"],
         ["'threads'", "four"], 1),
    case("profile-hardware-not-table",
         ["fit", "--device", "{bad}/profiles/hardware_int.toml", "--ms", "20", "--out", "{out}"],
         ["hardware_int.toml", "hardware"]),
    case("profile-empty-name", [*FAST[:2], "{bad}/profiles/empty_name.toml", *FAST[3:]], ["empty_name.toml", "name"]),
    case("profile-target-unknown-key",
         ["fit", "--device", "{bad}/profiles/target_password.toml", "--ms", "20", "--out", "{out}"],
         ["target_password.toml", "password", "host"], absent=["hunter2"]),
    case("profile-negative-peak", [*FIT_TINY[:2], "{bad}/profiles/neg_peak.toml", *FIT_TINY[3:]],
         ["neg_peak.toml", "clock_ghz"], 1),
    case("profile-adb-device", ["profile", "--device", "pixel7"], ["adb", "--runner", "docs/adb.md"], 2),
    case("profile-ssh-without-host", ["profile", "--device", "rpi5"], ["rpi5", "--host"], 2),
    case("profile-host-flag-like", ["profile", "--device", "rpi5", "--host", "-oProxyCommand=touch_x"],
         ["-oProxyCommand", "option"], 2),
    case("profile-host-with-space", ["profile", "--device", "rpi5", "--host", "pi@rpi 5"], ["pi@rpi 5", "whitespace"], 2),
    case("profile-port-0", ["profile", "--device", "rpi5", "--host", "pi@rpi5", "--port", "0"], ["--port"], 2),
    case("profile-identity-is-folder", ["profile", "--device", "rpi5", "--host", "pi@rpi5", "--identity", "{tmp}"],
         ["--identity", "directory"], 2),
    case("profile-serial-flag-like", ["profile", "--device", "pixel7", "--serial", "-s"], ["adb serial", "option"], 2),
    case("profile-cmd-threads-0", ["profile", "--device", "{bad}/profiles/threads0.toml"], ["threads0.toml", "threads"], 1),
    case("devices-one-bad-profile", ["devices"], ["threads0.toml", "threads"], 1,
         env={"MAESTRO_EDGE_PROFILES": "{bad}/profiles_one_bad"}),
    case("devices-hardware-not-table", ["devices", "--json"], ["odd.toml", "hardware"],
         env={"MAESTRO_EDGE_PROFILES": "{bad}/profiles_hw_int"}),
    case("devices-profiles-dir-missing", ["devices"], ["MAESTRO_EDGE_PROFILES"],
         env={"MAESTRO_EDGE_PROFILES": "{tmp}/no-such-folder"}),
    # --- checkpoints (--model) ---
    case("model-truncated", [*FIT, "--model", "{bad}/ckpt/truncated.pt"], ["truncated.pt"], 1),
    case("model-text-file", [*FIT, "--model", "{bad}/ckpt/notes.txt"], ["notes.txt"]),
    case("model-json-file", [*FIT, "--model", "{bad}/ckpt/config.json"], ["config.json", "not a"]),
    case("model-plain-pickle", [*FIT, "--model", "{bad}/ckpt/plain.pkl"], ["plain.pkl"]),
    case("model-is-folder", [*FIT, "--model", "{bad}/ckpt/a_folder.pt"], ["a_folder.pt"], 1),
    case("model-schema-version-2", [*FIT, "--model", "{bad}/ckpt/schema2.pt"], ["schema2.pt", "schema 2"], 1),
    case("model-state-dict-wrong-shape", [*FIT, "--model", "{bad}/ckpt/bad_shape.pt"], ["bad_shape.pt", "retrain"], 1),
    case("model-state-dict-missing-key", [*FIT, "--model", "{bad}/ckpt/missing_key.pt"], ["missing_key.pt"], 1),
    case("model-unknown-arch", [*FIT, "--model", "{bad}/ckpt/unknown_arch.pt"], ["transformer9000", "small_cnn"], 1),
    case("model-bad-arch-kwargs", [*FIT, "--model", "{bad}/ckpt/bad_arch_kwargs.pt"], ["bad_arch_kwargs.pt"]),
    case("model-no-data-entry", [*FIT, "--model", "{bad}/ckpt/no_data.pt"], ["no_data.pt"]),
    case("model-unknown-dataset", [*FIT, "--model", "{bad}/ckpt/unknown_data.pt"], ["imagenet-offline", "digits"], 2),
    case("model-no-importance", [*FIT, "--model", "{bad}/ckpt/no_importance.pt"], ["importance", "retrain"], 2),
    case("model-active-rank-0", [*FAST[:-4], "--model", "{bad}/ckpt/active_rank0.pt", "--out", "{out}"],
         ["active_rank0.pt"]),
    case("model-active-rank-above-max", [*FAST[:-4], "--model", "{bad}/ckpt/active_rank_big.pt", "--out", "{out}"],
         ["active_rank_big.pt"]),
    case("profile-cmd-missing-model", ["profile", "--device", "host", "--model", "{tmp}/nope.pt"],
         ["nope.pt", "does not exist"], 1),
    # --- latency tables (--table) ---
    case("table-other-device", [*FIT_TINY, "--table", "{bad}/tables/other_device.json"], ["other_device.json", "rpi5"]),
    case("table-negative-latency", [*FIT_TINY, "--table", "{bad}/tables/negative.json"], ["negative.json", "negative"], 1),
    case("table-nan-latency", [*FIT_TINY, "--table", "{bad}/tables/nan.json"], ["nan.json", "non-finite"], 1),
    case("table-overhead-leaves-no-time", [*FIT_TINY, "--table", "{bad}/tables/no_time.json"], ["no_time.json", "no time"], 1),
    case("table-schema-version-2", [*FIT_TINY, "--table", "{bad}/tables/schema2.json"], ["schema2.json", "schema"], 1),
    case("table-missing-layer", [*FIT_TINY, "--table", "{bad}/tables/missing_layer.json"], ["missing_layer.json"], 1),
    case("table-bad-rank-key", [*FIT_TINY, "--table", "{bad}/tables/bad_rank_key.json"], ["bad_rank_key.json"], 1),
    case("table-threads-0", [*FAST, "--table", "{bad}/tables/threads0.json"], ["threads0.json", "threads"]),
    case("table-not-found", [*FIT_TINY, "--table", "{tmp}/nope.json"], ["nope.json"]),
    case("table-is-folder", [*FIT_TINY, "--table", "{bad}/tables/a_folder"], ["a_folder"]),
    case("table-with-two-devices", ["fit", "--device", "pixel7", "--device", "rpi5", "--ms", "20",
                                    "--table", "{bad}/tables/negative.json", "--out", "{out}"], ["one --device"], 2),
    # --- plans (export --plan) ---
    case("plan-not-found", [*EXPORT, "{tmp}/nope.json"], ["nope.json"]),
    case("plan-is-folder", [*EXPORT, "{bad}/plans/a_folder"], ["a_folder"]),
    case("plan-rank-true", [*EXPORT, "{bad}/plans/bool_rank.json"], ["True"]),
    case("plan-rank-above-max", [*EXPORT, "{bad}/plans/big_rank.json"], ["100000", "dense"], 2),
    case("plan-ranks-is-list", [*EXPORT, "{bad}/plans/ranks_list.json"], ["ranks_list.json", "ranks"], 2),
    case("plan-names-one-layer", [*EXPORT, "{bad}/plans/one_layer.json"], ["no rank for", "every layer"], 2),
    # --- output paths ---
    case("fit-out-under-a-file", [*FIT_TINY[:-4], "--model", "{ckpt}", "--out", "{file}/sub"], ["sub"], slow=True),
    case("export-out-is-a-file", [*EXPORT[:-3], "--out", "{file}", "--plan", "{bad}/plans/valid.json"], ["afile", "folder"], 2),
    case("export-out-under-a-file", [*EXPORT[:-3], "--out", "{file}/sub", "--plan", "{bad}/plans/valid.json"], ["sub"],
         slow=True),
    case("train-out-under-a-file", ["train", "--epochs", "1", "-q", "--out", "{file}/lod.pt"], ["lod.pt"], slow=True),
    case("train-out-is-a-folder", ["train", "--epochs", "1", "--out", "{tmp}"], ["--out", "directory"], 2),
    case("report-out-under-a-file", ["report", "{bad}/reports/good", "--out", "{file}/report.html"],
         ["report.html", "which is a file"], 2),
    case("report-out-not-a-report", ["report", "{bad}/reports/good", "--out", "{file}"],
         ["afile", "not a maestro-edge report"], 2),
    case("fit-out-name-too-long", [*FIT_TINY[:-4], "--model", "{ckpt}", "--out", "{tmp}/" + "x" * 300],
         ["too long"], 2),
    case("fit-out-symlink", [*FIT_TINY[:-4], "--model", "{ckpt}", "--out", "{bad}/links/to_folder"],
         ["to_folder", "symbolic link"], 2),
    case("fit-out-dangling-symlink", [*FIT_TINY[:-4], "--model", "{ckpt}", "--out", "{bad}/links/dangling"],
         ["dangling", "does not exist"], 2),
    case("fit-out-unwritable", [*FIT_TINY[:-4], "--model", "{ckpt}", "--out", "/proc/maestro-edge-out"],
         ["/proc", "cannot write"], 2),
    case("train-out-not-a-checkpoint", ["train", "--epochs", "1", "-q", "--out", "{file}"],
         ["afile", "not a maestro-edge checkpoint"], 2),
    case("cache-is-a-file", FIT_TINY, ["MAESTRO_EDGE_CACHE", "afile", "is a file"], 2,
         env={"MAESTRO_EDGE_CACHE": "{file}"}),
    # --- train flags ---
    case("train-epochs-0", ["train", "--epochs", "0", "--out", "{out}"], ["--epochs", "x>=1"], 2),
    case("train-lr-negative", ["train", "--lr", "-0.1", "--out", "{out}"], ["--lr"], 2),
    case("train-clip-negative", ["train", "--clip-grad-norm", "-1", "--out", "{out}"], ["--clip-grad-norm", "x>=0"], 2),
    case("train-compile-without-constant-shapes", ["train", "--compile", "--out", "{out}"],
         ["--compile", "--constant-shapes"], 2),
    case("train-warmup-not-below-epochs", ["train", "--epochs", "2", "--warmup-epochs", "2", "--out", "{out}"],
         ["--warmup-epochs", "below --epochs"], 2),
    case("train-unknown-sampler", ["train", "--sampler", "random", "--out", "{out}"], ["random", "single-layer"], 2),
    case("train-unknown-arch", ["train", "--arch", "resnet1000", "--epochs", "1", "--out", "{out}"],
         ["resnet1000", "small_cnn"], 2),
    case("train-unknown-dataset", ["train", "--data", "imagenet", "--epochs", "1", "--out", "{out}"],
         ["imagenet", "digits"], 2),
    # --- report ---
    case("report-missing-folder", ["report", "{tmp}/no-such-out"], ["no-such-out", "does not exist"], 2),
    case("report-folder-is-a-file", ["report", "{file}"], ["afile", "not a folder"], 2),
    case("report-no-fit-json", ["report", "{bad}/reports/empty"], ["no fit.json"], 2),
    case("report-corrupt-fit-json", ["report", "{bad}/reports/corrupt"], ["fit.json", "not valid JSON"], 1),
    case("report-fit-json-is-a-list", ["report", "{bad}/reports/list"], ["fit.json", "list"], 1),
    case("report-fit-json-schema-2", ["report", "{bad}/reports/schema2"], ["fit.json", "schema_version 2"], 1),
    case("report-fit-json-incomplete", ["report", "{bad}/reports/incomplete"], ["fit.json", "'ranks'"], 1),
    case("report-budget-out-of-range", ["report", "{bad}/reports/huge-budget"], ["'budget_ms'", "1e+06"], 1),
    case("report-accuracy-above-one", ["report", "{bad}/reports/accuracy-57"], ["'accuracy'", "[0, 1]"], 1),
    case("report-rank-above-max", ["report", "{bad}/reports/rank-above-max"], ["above its maximum 8"], 1),
]


@pytest.mark.parametrize("argv, words, absent, code, env", CATALOGUE)
def test_bad_input(capsys, monkeypatch, tmp_path, bad, tiny_checkpoint, argv, words, absent, code, env):
    precious = tmp_path / "afile"
    precious.write_text("precious")
    paths = {"ckpt": str(tiny_checkpoint), "bad": str(bad), "out": str(tmp_path / "out-folder"),
             "file": str(precious), "tmp": str(tmp_path)}
    cache = Path(os.environ["MAESTRO_EDGE_CACHE"])   # set by tests/conftest.py (a case may point it elsewhere)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(**paths))
    monkeypatch.chdir(tmp_path)             # default outputs (out/...) would land here, and be seen
    cache.mkdir(parents=True, exist_ok=True)
    before = snapshot(tmp_path, bad, cache)

    code_, out, err = run_cli(capsys, [a.format(**paths) for a in argv])

    line = assert_one_line_error(code_, out, err, [w.format(**paths) for w in words], code)
    for secret in absent:
        assert secret not in err, f"{secret!r} printed: {line!r}"
    assert not (tmp_path / "out-folder").exists()
    assert precious.read_text() == "precious"
    assert snapshot(tmp_path, bad, cache) == before, "files were written, changed or left behind"


def test_catalogue_is_documented():
    """docs/errors.md has one row per case id (and no row for a case that is gone)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, re.MULTILINE))
    from tests.cli.test_user_model_errors import USER_MODEL_CASE_IDS

    ids = {p.id for p in CATALOGUE}
    assert len(ids) == len(CATALOGUE), "duplicate case ids"
    ids |= USER_MODEL_CASE_IDS
    assert ids - documented == set(), "cases missing from docs/errors.md"
    assert documented - ids == set(), "docs/errors.md rows without a case"
    assert len(CATALOGUE) >= 40
    commands = {next((a for a in p.values[0] if not a.startswith("-")), "") for p in CATALOGUE}
    assert {"devices", "train", "profile", "fit", "export", "report"} <= commands
