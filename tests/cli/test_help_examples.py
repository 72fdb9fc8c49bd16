"""The examples in --help work on the embedded default: every budget in them is feasible on its devices."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from maestro_edge.cli import DEFAULT_MODEL, cli
from maestro_edge.devices.profile import find_profile
from maestro_edge.fit import latency_table_for, solver_layers
from maestro_edge.lod.checkpoint import LoDCheckpoint

pytestmark = pytest.mark.real_default


def example_fits(command: str) -> list[tuple[list[str], list[float]]]:
    """(devices, budgets) of every 'maestro-edge fit' example on the default model in COMMAND's --help."""
    text = CliRunner().invoke(cli, [command, "--help"]).output
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("maestro-edge fit") and "--model" not in line:
            devices = re.findall(r"--device (\S+)", line)
            budgets = [float(b) for b in re.search(r"--ms (\S+)", line).group(1).split(",")]
            found.append((devices, budgets))
    return found


def test_every_fit_example_in_help_is_feasible_on_the_default_model():
    examples = example_fits("fit") + example_fits("report")
    assert len(examples) >= 3
    ckpt = LoDCheckpoint.load(DEFAULT_MODEL)
    for devices, budgets in examples:
        for device in devices:
            profile = find_profile(device)
            if profile.latency_source != "estimated":
                continue   # the host's figures are measured when the example runs; README's P1 covers them
            table = latency_table_for(ckpt, profile)
            fastest = table.overhead_ms + sum(min(o.latency_ms for o in layer.options)
                                              for layer in solver_layers(ckpt, table))
            assert min(budgets) >= fastest, f"{device} at {min(budgets)} ms (fastest plan {fastest:.3g} ms)"
