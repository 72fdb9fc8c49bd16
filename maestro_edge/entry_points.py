"""``module:function`` specs from the command line (``--eval``, ``--calibrate``), imported safely."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

from maestro_edge.errors import UsageError


def load_callable(spec: str, flag: str) -> Callable:
    """The function named by ``spec`` ("package.module:function"), importable from the current folder too."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise UsageError(f"{flag} {spec!r} is not of the form package.module:function; pass e.g. {flag} mypkg.evals:score")
    here = os.getcwd()
    added = here not in sys.path
    if added:   # a console script does not put the current folder on sys.path; `python -m` does
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UsageError(f"{flag} {spec}: no module named {e.name!r}; run from the folder that holds it, "
                         "or install it") from None
    except Exception as e:   # the user's module failed while importing
        raise UsageError(f"{flag} {spec}: importing {module_name} raised {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:160]}; fix the module") from None
    finally:
        if added:
            sys.path.remove(here)
    func = getattr(module, attr, None)
    if not callable(func):
        raise UsageError(f"{flag} {spec}: {module_name} has no function {attr!r}; pass the name of a function it defines")
    return func
