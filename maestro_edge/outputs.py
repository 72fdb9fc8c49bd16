"""Output paths: checked before any work; output folders written all at once, one process at a time.

Checks (``check_output_folder``, ``check_output_file``): a name the file system cannot hold, a symbolic
link (followed, it would replace the link or write where the user did not say), a file where a folder
goes, and a folder this process cannot write are refused in one line, before minutes of work.

An output folder is written into a hidden staging sibling (``.<name>.tmpXXXXXXXX``), then swapped in:
the old folder is renamed aside (``.<name>.maestro-edge-old``), the staged one renamed in, the aside one
deleted. A kill at any point leaves the old folder or the new one, never neither. All of it happens
under ``claim_output_folder``, an flock on ``.<name>.maestro-edge-lock`` beside the folder: whoever
holds it knows that any staging or aside folder of that name is a dead writer's, and cleans it up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from maestro_edge.errors import UsageError
from maestro_edge.user_files import readable_mode

OUTPUT_FILES = {"model.pte", "model.onnx", "model.bpte", "fit.json", "export.json"}
LOCK_SUFFIX = ".maestro-edge-lock"
ASIDE_SUFFIX = ".maestro-edge-old"
SIBLING_EXTRA = 1 + len(LOCK_SUFFIX)   # the longest hidden sibling adds "." + this to the name
SHOWN_CHARS = 120                      # longer paths are shortened in messages (one readable line)


def shown(path) -> str:
    """A path quoted for a message (``repr``: a newline or an undecodable byte stays visible), its middle
    cut when very long."""
    text = str(path)
    if len(text) > SHOWN_CHARS:
        text = f"{text[:60]}...{text[-40:]}"
    return repr(text)


# -- checks -------------------------------------------------------------------------------------------


class _Unusable(Exception):
    """Why a path cannot be written, as words that follow the path ("is under 'x', which is a file")."""


def _lstat(path: Path) -> os.stat_result | None:
    """The path's own status (a link is not followed); None when nothing is there."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:
        raise _Unusable("holds a NUL character, which no file name can") from None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise _Unusable("is too long for the file system (a name over 255 bytes, or a path over 4096)") from None
        raise _Unusable(f"cannot be checked ({e.strerror})") from None


def _existing_folder_above(path: Path) -> Path:
    """The nearest existing folder above ``path``; _Unusable when a file or a dangling link is in the way."""
    parent = path.parent
    while True:
        own = _lstat(parent)
        if own is not None:
            if os.path.isdir(parent):          # follows a link: a linked parent folder is fine
                return parent
            if stat.S_ISLNK(own.st_mode) and not os.path.exists(parent):
                raise _Unusable(f"is under {shown(parent)}, a symbolic link to {shown(os.readlink(parent))}, "
                                "which does not exist")
            raise _Unusable(f"is under {shown(parent)}, which is a file")
        parent = parent.parent


def _check_writable(folder: Path, path: Path) -> None:
    """_Unusable unless this process can create files in ``folder`` (``path`` itself, or the nearest folder
    above it). os.access first (right for permission bits, read-only mounts and immutable folders), then
    a real probe: as root, os.access says yes where the file system still says no (/sys, NFS with root
    squashed)."""
    where = "cannot be written by this process" if folder == path else \
        f"is in {shown(folder)}, which this process cannot write"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _Unusable(where)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".maestro-edge-probe.")
    except OSError as e:
        raise _Unusable(f"{where} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _check_name_fits(path: Path, folder: Path) -> None:
    """_Unusable when the hidden siblings we write beside ``path`` would be names too long for ``folder``."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    longest = len(os.fsencode(path.name)) + SIBLING_EXTRA
    if longest > name_max or len(os.fsencode(os.path.abspath(path))) + SIBLING_EXTRA >= 4096:
        raise _Unusable(f"is too long for the file system once the temporary name is added (names up to "
                        f"{name_max - SIBLING_EXTRA} bytes)")


def _inspect(path: Path) -> os.stat_result | None:
    """``path``'s own status (None: nothing there yet) once it is known that it can be written: _Unusable
    for a name too long, a symbolic link, a file in the way, or a folder this process cannot write."""
    own = _lstat(path)
    if own is not None and stat.S_ISLNK(own.st_mode):
        target = shown(os.readlink(path))
        raise _Unusable(f"is a symbolic link to {target}" if os.path.exists(path)
                        else f"is a symbolic link to {target}, which does not exist")
    if not Path(os.path.abspath(path)).name:
        raise _Unusable("is the root folder")
    folder = _existing_folder_above(path)
    _check_name_fits(path, folder)
    _check_writable(folder, path)
    return own


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output folder that cannot be written or replaced (see the module docstring), or one
    holding anything but our outputs: ``fit`` replaces it as a whole, and other files are someone's work."""
    out_dir = Path(out_dir)   # an empty --out arrives as "." (pathlib)
    try:
        own = _inspect(out_dir)
    except _Unusable as e:
        raise UsageError(f"output path {shown(out_dir)} {e}; pass another --out") from None
    try:
        here, target = os.path.realpath(os.getcwd()), os.path.realpath(out_dir)
    except FileNotFoundError:   # the working folder was deleted: nothing of it to protect
        here = target = None
    if here is not None and (here == target or here.startswith(target.rstrip(os.sep) + os.sep)):
        raise UsageError(f"output path {shown(out_dir)} is the current folder or holds it, and fit replaces its "
                         "output folder as a whole; pass a new folder, e.g. --out out")
    if own is None:
        return
    if not stat.S_ISDIR(own.st_mode):
        raise UsageError(f"output path {shown(out_dir)} is a file; pass --out with a folder path")
    try:
        foreign = sorted(name for name in os.listdir(out_dir) if name not in OUTPUT_FILES)
    except OSError as e:
        raise UsageError(f"output folder {shown(out_dir)} cannot be read ({e.strerror}); pass another --out") from None
    if foreign:
        raise UsageError(f"output folder {shown(out_dir)} holds other files ({', '.join(foreign[:3])}); "
                         "pass an empty or new folder with --out")


def check_output_file(path: Path) -> None:
    """Refuse a file path that cannot be written (checked before hours of training), or that is a folder."""
    path = Path(path)
    try:
        own = _inspect(path)
    except _Unusable as e:
        raise UsageError(f"{shown(path)} {e}; give another path") from None
    if own is not None and stat.S_ISDIR(own.st_mode):
        raise UsageError(f"{shown(path)} is a folder; give a file path")


def folder_problem(folder: Path, writable: bool = True) -> str | None:
    """Why ``folder`` cannot hold files (with ``writable``: files this process creates), as words that
    follow its path; None if it can. For folders that are not output paths (the cache), whose messages
    name where the path came from. A symbolic link to a folder is fine here: nothing replaces it."""
    try:
        own = _lstat(folder)
        if own is not None and not os.path.isdir(folder):
            return (f"is a symbolic link to {shown(os.readlink(folder))}, which does not exist"
                    if stat.S_ISLNK(own.st_mode) else "is a file")
        above = folder if own is not None else _existing_folder_above(folder)
        if writable:
            _check_writable(above, folder)
    except _Unusable as e:
        return str(e)
    return None


# -- one writer per output ---------------------------------------------------------------------------

_held: dict[str, list] = {}   # lock file -> [fd, depth]: a claim is re-entrant within one process


def _beside(path: Path, suffix: str) -> Path:
    path = Path(os.path.abspath(path))
    return path.parent / f".{path.name}{suffix}"


def _acquire(lock: Path, busy: str) -> int:
    """An fd holding an exclusive flock on ``lock``; UsageError(busy) at once if another process holds it."""
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise UsageError(f"cannot create the lock file {shown(lock)} ({e.strerror}); pass an output path in "
                             "a folder this process can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(busy) from None
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)   # its last holder removed it after we opened it: lock the file now at that name
    raise UsageError(busy)


@contextlib.contextmanager
def hold_lock(path: Path, busy: str):
    """Hold an exclusive flock on ``.<name>.maestro-edge-lock`` beside ``path`` for the block (re-entrant in
    this process). Another process holding it: UsageError(``busy``) at once, nothing waited for. The
    lock dies with its process (kill -9 included); the file is removed on release, while still held,
    so a process that opened it meanwhile sees a removed file and takes the new one."""
    lock = _beside(path, LOCK_SUFFIX)
    key = str(lock)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    fd = _acquire(lock, busy)
    _held[key] = [fd, 1]
    try:
        yield
    finally:
        del _held[key]
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def claim_output_folder(out_dir: Path):
    """Check ``out_dir`` and hold it for this process while the block runs.

    A second maestro-edge process claiming the same folder gets a one-line UsageError at once. On
    entry, what a killed writer left (its staging folder; the old folder it had renamed aside) is
    cleaned up or put back. Parent folders made for the lock are removed again if left empty.
    """
    check_output_folder(out_dir)
    absolute = Path(os.path.abspath(out_dir))
    try:
        made = _make_parents(absolute.parent)
    except OSError as e:
        raise UsageError(f"cannot create the folders of {shown(out_dir)} ({e.strerror}); pass another --out") from None
    try:
        with hold_lock(absolute, f"another maestro-edge process is writing {shown(out_dir)}; "
                                 "wait for it or pass another --out"):
            _recover(absolute)
            yield
    finally:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p ``folder``; the folders made, deepest first."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        made.mkdir(exist_ok=True)
    return missing


def _staging_name(out_dir: Path) -> re.Pattern:
    """Names of ``out_dir``'s staging folders, as tempfile.mkdtemp makes them (8 random characters)."""
    return re.compile(re.escape(f".{out_dir.name}.tmp") + r"[a-z0-9_]{8}")


def _only_outputs(folder: Path) -> bool:
    """A real folder holding nothing but our output files (what an aside folder is)."""
    own = _lstat(folder)
    return own is not None and stat.S_ISDIR(own.st_mode) and all(n in OUTPUT_FILES for n in os.listdir(folder))


def _recover(out_dir: Path) -> None:
    """Clean up what a killed writer of ``out_dir`` left (called with its lock held, so no live process owns it)."""
    aside = _beside(out_dir, ASIDE_SUFFIX)
    if _only_outputs(aside):
        if os.path.lexists(out_dir):
            shutil.rmtree(aside)            # killed after the new folder was in: the old one goes
        else:
            os.rename(aside, out_dir)       # killed between the two renames: the old folder comes back
    elif os.path.lexists(aside):
        raise UsageError(f"{shown(aside)} is not maestro-edge's, but it has the name used to set the old "
                         f"{shown(out_dir.name)} aside while it is replaced; move or delete it, or pass another --out")
    pattern = _staging_name(out_dir)
    for entry in os.scandir(out_dir.parent):
        if pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Rename ``staging`` to ``out_dir``; an old ``out_dir`` is renamed aside first and deleted last."""
    if not os.path.lexists(out_dir):
        os.rename(staging, out_dir)
        return
    aside = _beside(out_dir, ASIDE_SUFFIX)
    os.rename(out_dir, aside)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(aside, out_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)   # what stays is removed by the next claim


def write_outputs(out_dir: Path, files: dict[str, bytes], save_record: Callable[[Path], None]) -> None:
    """Write every file into a staging folder, then the record (``save_record(staging folder)``, once the files
    are in), then swap it in: all or nothing (see the module docstring)."""
    with claim_output_folder(out_dir):
        out_dir = Path(os.path.abspath(out_dir))
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
        try:
            staging.chmod(readable_mode() | 0o111)   # mkdtemp makes rwx------; a plain mkdir would not
            for name, blob in files.items():
                (staging / name).write_bytes(blob)
            save_record(staging)
            _swap_in(staging, out_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
