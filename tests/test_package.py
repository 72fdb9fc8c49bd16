"""The package's public surface: lazy, light to import, every name resolvable."""

from __future__ import annotations

import subprocess
import sys

import maestro_edge


def test_import_does_not_load_executorch_or_torch():
    code = "import sys, maestro_edge; print('executorch' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_cli_help_does_not_load_torch():
    code = ("import sys\nfrom maestro_edge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr
    assert err.strip().endswith("False")


def test_every_public_name_resolves():
    for name in maestro_edge.__all__:
        assert getattr(maestro_edge, name) is not None
