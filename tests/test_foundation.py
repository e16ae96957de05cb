"""The distribution's shape: five importable packages, the ``ehds`` entry point."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["audit_chain", "permits", "fhir_adapters", "federation", "gateway"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_importable_with_docstring(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__ and "May import" in module.__doc__


def test_ehds_help_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: ehds" in out.stdout
    ver = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"], capture_output=True, text=True, check=True
    )
    assert ver.stdout.startswith("ehds ")
