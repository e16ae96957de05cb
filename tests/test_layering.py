"""The package graph stays acyclic: each package imports only what DEVELOPERS.md allows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"trust", "audit_chain", "permits", "fhir_adapters", "federation", "gateway"}
ALLOWED: dict[str, set[str]] = {
    "trust": set(),
    "audit_chain": {"trust"},
    "permits": {"trust"},
    "fhir_adapters": {"trust"},
    "federation": {"trust", "audit_chain", "permits", "fhir_adapters"},
    "gateway": OURS - {"gateway"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_respect_the_graph(package: str) -> None:
    bad: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for imported in _imported_packages(path) - ALLOWED[package] - {package}:
            bad.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not bad, "layering violations:\n" + "\n".join(bad)
