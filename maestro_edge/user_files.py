"""The user's files: reading one (every way it can fail becomes one line that says what to do), and
writing one atomically (a temporary file beside it, then a rename: never a half-written file)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, IO

from maestro_edge.errors import MaestroError


def read_user_text(path: str | Path, what: str, expected: str, error: type[MaestroError]) -> str:
    """The text of ``path``; ``what`` names it ("latency table"), ``expected`` says what to pass instead."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist; pass {expected}") from None
    except IsADirectoryError:
        raise error(f"{what} {str(path)!r} is a folder; pass {expected}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not text (a binary file?); pass {expected}") from None
    except OSError as e:
        raise error(f"{what} {str(path)!r} cannot be read ({e.strerror}); pass {expected}") from None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (runner binaries, data set files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def readable_mode() -> int:
    """rw-r--r-- less the umask: what a plain open() would have given (mkstemp gives rw-------)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o644 & ~umask


def temp_beside(path: str | Path, suffix: str = ".tmp") -> tuple[Path, Path]:
    """(absolute final path, an empty hidden temporary file in its folder): os.replace between them is atomic."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return path, Path(tmp)


def write_atomic(path: str | Path, write: bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``write`` (bytes, or a function of the open binary file) to ``path`` all at once or not at all."""
    path, tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            write(f) if callable(write) else f.write(write)
        os.chmod(tmp, readable_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data) -> None:
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
