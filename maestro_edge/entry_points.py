"""``module:function`` specs from the command line (``--eval``, ``--calibrate``, ``--train-data``), imported
safely and called fenced: the user's code prints to stderr (``fit --json`` stays JSON on stdout), and whatever it
raises, or an exit it calls, ends as one line that names the function."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from typing import Callable

from maestro_edge.errors import MaestroError, UsageError


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
        with contextlib.redirect_stdout(sys.stderr):   # a module that prints while importing
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UsageError(f"{flag} {spec}: no module named {e.name!r}; run from the folder that holds it, "
                         "or install it") from None
    except Exception as e:   # the user's module failed while importing
        raise UsageError(f"{flag} {spec}: importing {module_name} raised {type(e).__name__}: "
                         f"{' '.join(str(e).split())[:160]}; fix the module") from None
    except SystemExit as e:
        raise UsageError(f"{flag} {spec}: importing {module_name} called exit({e.code!r}); a module given to "
                         f"{flag} must not exit when imported") from None
    finally:
        if added:
            sys.path.remove(here)
    func = getattr(module, attr, None)
    if not callable(func):
        raise UsageError(f"{flag} {spec}: {module_name} has no function {attr!r}; pass the name of a function it defines")
    return fenced(func, f"{flag} {spec}")


def fenced(func: Callable, name: str) -> Callable:
    """``func`` called with its prints sent to stderr; an exception or an exit from it becomes one MaestroError
    naming ``name`` (Ctrl-C stays Ctrl-C)."""
    @functools.wraps(func)
    def call(*args, **kwargs):
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return func(*args, **kwargs)
        except MaestroError:
            raise
        except Exception as e:
            raise MaestroError(f"{name} raised {type(e).__name__}: {' '.join(str(e).split())[:160]}; "
                               "fix the function") from None
        except SystemExit as e:
            raise MaestroError(f"{name} called exit({e.code!r}); it must return its result, not exit") from None
    return call


def checked_batches(batches, flag: str) -> list:
    """The batches a user's function returned (``--calibrate``, ``--train-data``), as a list, each a tensor or a
    tuple/list of tensors; anything else is one MaestroError that says what came back."""
    import torch

    def batch_ok(batch) -> bool:
        items = batch if isinstance(batch, (tuple, list)) else (batch,)
        return bool(items) and all(isinstance(t, torch.Tensor) for t in items)

    if isinstance(batches, (str, bytes, torch.Tensor)) or not hasattr(batches, "__iter__"):
        raise MaestroError(f"{flag} returned {type(batches).__name__}; it must return a list (or any iterable) of "
                           "batches, each a tensor of model inputs or a tuple of tensors")
    batches = list(batches)
    bad = next((b for b in batches if not batch_ok(b)), None)
    if bad is not None:
        raise MaestroError(f"{flag} gave a batch of type {type(bad).__name__}; each batch must be a tensor of model "
                           "inputs or a tuple of tensors")
    return batches
