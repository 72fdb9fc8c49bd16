"""Fixtures for the device tests: a real loopback sshd, tiny probe models, the fake adb.

The sshd fixture skips when OpenSSH is not installed, except under CI (env var CI set), where a
silent skip would hide that the ssh transport went untested: there it fails instead.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from .sshd import Sshd, SshdInfo, missing_tools

DOUBLES = Path(__file__).resolve().parents[1] / "doubles"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> SshdInfo:
    missing = missing_tools()
    if missing:
        message = f"OpenSSH is not installed ({', '.join(missing)} missing); apt-get install openssh-server"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip the ssh transport tests)")
        pytest.skip(message)
    server = Sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def ssh(sshd, tmp_path):
    """A connected SshTransport with its workdir in this test's tmp folder."""
    from maestro_edge.devices.transports import SshTransport

    t = SshTransport(sshd.host, port=sshd.port, identity=sshd.identity, known_hosts=sshd.known_hosts,
                     remote_workdir=str(tmp_path / "remote"))
    yield t
    t.close()


@pytest.fixture
def fake_adb(tmp_path, monkeypatch) -> Path:
    """Path to the fake adb client, with a fresh fake device filesystem in tmp_path/device."""
    root = tmp_path / "device"
    (root / "data" / "local" / "tmp").mkdir(parents=True)
    monkeypatch.setenv("FAKE_ADB_ROOT", str(root))
    for var in ("FAKE_ADB_STATE", "FAKE_ADB_SERIAL", "FAKE_ADB_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return DOUBLES / "fake_adb"


@pytest.fixture(scope="session")
def onnx_probes(tmp_path_factory) -> Path:
    """A folder with three tiny ONNX probes and their manifest.json."""
    import torch

    d = tmp_path_factory.mktemp("probes")
    torch.manual_seed(0)
    specs = [("fc/dense", torch.nn.Linear(32, 16), [1, 32]),
             ("conv/r4", torch.nn.Conv2d(4, 8, 3, padding=1), [1, 4, 8, 8]),
             ("conv 1x1/r2", torch.nn.Conv2d(8, 8, 1), [1, 8, 4, 4])]
    probes = []
    for i, (name, module, shape) in enumerate(specs):
        file = f"probe{i}.onnx"
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but fast and dependency-free
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(module.eval(), (torch.randn(shape),), str(d / file), dynamo=False, opset_version=18)
        probes.append({"name": name, "file": file, "input_shape": shape})
    (d / "manifest.json").write_text(json.dumps({"probes": probes}))
    return d

