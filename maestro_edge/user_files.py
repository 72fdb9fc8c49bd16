"""Reading a file the user named: every way it can fail becomes one line that says what to do."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
