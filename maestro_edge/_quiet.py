"""Silence the toolchain's chatter (Python warnings and native C++ prints) around noisy calls.

torch.export, the ExecuTorch lowering and runtime, and the ONNX exporter print deprecation warnings
and ``[cpuinfo_utils.cpp:...]`` lines from C++ straight to file descriptors 1 and 2; a CLI user
needs none of them. Errors still surface as exceptions.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import warnings


@contextlib.contextmanager
def quiet():
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _libc_fflush()   # C stdio buffers would otherwise spill into the restored descriptors later
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _libc_fflush() -> None:
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass
