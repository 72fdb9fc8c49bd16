"""Output folders: checked before any work, written all at once (temporary sibling folder, then rename)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path

from maestro_edge.errors import UsageError
from maestro_edge.user_files import readable_mode, write_json_atomic

OUTPUT_FILES = {"model.pte", "model.onnx", "fit.json", "export.json"}


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output path that is a file, sits under a file, or is a folder holding anything but our outputs.

    ``fit`` replaces its output folder as a whole; a folder with other files in it is someone's work.
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError(f"output path {str(out_dir)!r} is a file; pass --out with a folder path")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise UsageError(f"output folder {str(out_dir)!r} holds other files ({', '.join(foreign[:3])}); "
                             "pass an empty or new folder with --out")
        return
    parent = out_dir.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"output path {str(out_dir)!r} is under {str(parent)!r}, which is a file; pass another --out")


def write_outputs(out_dir: Path, files: dict[str, bytes], record: dict, record_name: str, started: float) -> None:
    """Write every file into a temporary sibling folder, then swap it in: all or nothing."""
    check_output_folder(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        staging.chmod(readable_mode() | 0o111)   # mkdtemp makes rwx------; a plain mkdir would not
        for name, blob in files.items():
            (staging / name).write_bytes(blob)
            record["artifacts"].append({"path": name, "format": Path(name).suffix[1:],
                                        "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob)})
        record["wall_time_s"] = round(time.perf_counter() - started, 2)
        write_json_atomic(staging / record_name, record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def check_output_file(path: Path) -> None:
    """Refuse a file path that is a folder or sits under a file (checked before hours of training)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder; give a file path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{str(path)!r} is under {str(parent)!r}, which is a file; give another path")
