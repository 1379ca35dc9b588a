"""Nothing touches the network at run time: importing the entry points makes no DNS lookup
or connection (albumentations' PyPI version check is switched off before its import)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

GUARD = """
import socket
def deny(*args, **kwargs):
    raise SystemExit(f"network access attempted: {args[:2]}")
socket.getaddrinfo = deny
socket.socket.connect = deny
import train, predict_ensemble, validate, export, scripts.demo, dataset.synthetic, dataset.create_kfolds
print("offline ok")
"""


@pytest.mark.slow
def test_entry_points_import_without_network() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    result = subprocess.run([sys.executable, "-c", GUARD], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "offline ok" in result.stdout
