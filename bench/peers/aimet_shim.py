"""Import AIMET (aimet-torch) next to CPU torch, where no working torchvision exists.

Why: aimet-torch requires torchvision and imports it at module level, but the only torchvision build reachable
here (0.28.0, the one aimet-torch 2.42.0 pairs with) is a CUDA build; next to CPU torch 2.13.0 its import dies
with ``RuntimeError: operator torchvision::nms does not exist``. bench/peers/install_aimet.sh therefore installs
aimet-torch with ``--no-deps`` and no torchvision at all, and this module gives AIMET a stand-in.

What it stubs (and nothing else), when no working torchvision is importable: a module ``torchvision`` in
``sys.modules`` with the three submodules and six names that aimet-torch 2.42.0 touches outside its examples/
(every ``torchvision`` in its sources, found by grep; all three are module-level imports):

==========================================  =====================================================================
aimet-torch module (import path)            what it does with torchvision
==========================================  =====================================================================
``aimet_torch/utils.py``                    ``from torchvision import datasets, transforms``; used only by
                                            ``create_fake_data_loader`` (``transforms.Compose``/``ToTensor``,
                                            ``datasets.FakeData``)
``aimet_torch/onnx_utils.py``               ``torchvision.transforms.Resize`` and ``torchvision.ops.RoIPool`` as
                                            *keys* of the torch-type -> ONNX-op table used by QuantSim export
``aimet_torch/_base/nn/modules/custom.py``  ``torchvision.ops.roi_align`` / ``torchvision.ops.nms`` inside the
                                            ``forward`` of AIMET's RoiAlign / NonMaxSuppression modules
==========================================  =====================================================================

The two classes are fresh, empty classes that cannot be instantiated, so as dictionary keys they can never match
a module of a user model (a table lookup by ``type(module)`` simply misses them). The four callables raise
``RuntimeError`` naming this stub if anything ever calls them.

Why that is safe for spatial SVD: ``ModelCompressor.compress_model(..., CompressionScheme.spatial_svd, ...)``
walks the model's Conv2d/Linear layers (aimet_torch.layer_database / svd / cost_calculator), splits each chosen
Conv2d into a (k x 1) and a (1 x k) Conv2d by a numpy SVD, and evaluates candidates with the user's eval
callback. None of that calls a torchvision op, a torchvision model, a transform or a data set: the stub is only
reached at import time (the attribute look-ups above). If any torchvision function were reached, the stub raises
instead of returning a wrong result, so a silent difference from real AIMET cannot occur.

Scope: the stub is in ``sys.modules`` only while ``import_aimet`` imports aimet_torch (``torchvision_stub``), and
is removed after, so later ``import torchvision`` / ``importlib.util.find_spec("torchvision")`` in the process
answer as without the shim (AIMET's modules keep the stub objects they bound). One more thing is needed inside
that window: aimet_torch.nn imports ``transformers`` when installed, and transformers asks once (lru_cache) whether
torchvision is installed; the shim asks it *before* registering the stub, so transformers caches the truth (no
torchvision) and never tries to use the stub.

Usage::

    from aimet_shim import import_aimet
    aimet_torch, compress, defs, common_defs = import_aimet()

If a working torchvision imports, no stub is used. If an installed torchvision fails to import (the CUDA build),
its half-imported modules are dropped from sys.modules, a warning says so, and the stub is used.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
import warnings

STUB_MARK = "__aimet_shim_stub__"
# The aimet-torch modules that hold the stub's names after import (checked by import_aimet).
AIMET_TORCHVISION_USERS = ("aimet_torch.utils", "aimet_torch.onnx_utils", "aimet_torch._base.nn.modules.custom")


def _unavailable(qualname: str):
    def call(*_args, **_kwargs):
        raise RuntimeError(
            f"{qualname} is a stub from bench/peers/aimet_shim.py (no working torchvision here); "
            "this AIMET feature needs a real torchvision"
        )

    call.__name__ = qualname.rsplit(".", 1)[-1]
    call.__qualname__ = qualname
    return call


def _placeholder_class(qualname: str) -> type:
    def __init__(self, *_args, **_kwargs):
        _unavailable(qualname)()

    module, name = qualname.rsplit(".", 1)
    return type(name, (), {"__init__": __init__, "__module__": module, "__qualname__": name})


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name, "Stub from bench/peers/aimet_shim.py: import-time names only.")
    # A spec, so importlib.util.find_spec("torchvision") answers instead of raising ValueError while it is registered.
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=(name == "torchvision"))
    setattr(mod, STUB_MARK, True)
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def _build_stub() -> dict[str, types.ModuleType]:
    ops = _module("torchvision.ops", RoIPool=_placeholder_class("torchvision.ops.RoIPool"),
                  roi_align=_unavailable("torchvision.ops.roi_align"), nms=_unavailable("torchvision.ops.nms"))
    transforms = _module("torchvision.transforms", Resize=_placeholder_class("torchvision.transforms.Resize"),
                         Compose=_unavailable("torchvision.transforms.Compose"),
                         ToTensor=_unavailable("torchvision.transforms.ToTensor"))
    datasets = _module("torchvision.datasets", FakeData=_unavailable("torchvision.datasets.FakeData"))
    root = _module("torchvision", __version__="0.0.0+aimet_shim_stub", __path__=[],
                   ops=ops, transforms=transforms, datasets=datasets)
    return {m.__name__: m for m in (root, ops, transforms, datasets)}


def _real_torchvision_works() -> bool:
    """True when a real torchvision is already imported or imports cleanly (then no stub is used)."""
    if "torchvision" in sys.modules:
        return not getattr(sys.modules["torchvision"], STUB_MARK, False)
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision")
        return True
    except Exception as err:  # noqa: BLE001  (the CUDA build fails with RuntimeError, others with ImportError)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        warnings.warn(f"torchvision is installed but does not import ({err!r}); using aimet_shim's stub")
        return False


def _prime_transformers_probe() -> None:
    """aimet_torch.nn imports transformers (when installed), whose import asks, once and cached, whether torchvision
    is installed. Ask it before the stub is registered, so transformers records the truth (no torchvision)."""
    if importlib.util.find_spec("transformers") is None:
        return
    try:
        from transformers.utils import import_utils

        import_utils.is_torchvision_available()
    except Exception:  # noqa: BLE001  (a broken transformers: aimet_torch.nn skips it on ImportError anyway)
        pass


@contextlib.contextmanager
def torchvision_stub():
    """Register the stub in sys.modules for the duration of the block (unless a working torchvision imports), then
    remove it, so that later ``import torchvision`` / ``find_spec("torchvision")`` answer as without the shim.

    Modules imported inside the block keep the stub objects they bound at import time."""
    if _real_torchvision_works():
        yield False
        return
    _prime_transformers_probe()
    stub = _build_stub()
    sys.modules.update(stub)
    try:
        yield True
    finally:
        for name, mod in stub.items():
            if sys.modules.get(name) is mod:
                del sys.modules[name]


def import_aimet():
    """Import and return (aimet_torch, compress, defs, common_defs): what spatial SVD uses, with the stub if needed.

    Every aimet-torch module on the spatial-SVD path is imported inside the stub's block, so none needs torchvision
    afterwards."""
    if "aimet_torch.compress" not in sys.modules:
        with torchvision_stub():
            importlib.import_module("aimet_torch.compress")
            for name in ("aimet_torch.defs", "aimet_torch.common.defs", "aimet_torch.svd.svd_pruner",
                         "aimet_torch.svd.svd_splitter", "aimet_torch.layer_database", "aimet_torch.cost_calculator",
                         "aimet_torch.compression_factory", "aimet_torch.utils", "aimet_torch.onnx_utils"):
                importlib.import_module(name)
    missing = [m for m in AIMET_TORCHVISION_USERS if m not in sys.modules]
    if missing:   # pragma: no cover - a future aimet-torch that moved its imports
        warnings.warn(f"aimet_shim: expected aimet-torch modules not imported: {missing}")
    import aimet_torch
    from aimet_torch import compress, defs
    from aimet_torch.common import defs as common_defs

    return aimet_torch, compress, defs, common_defs
