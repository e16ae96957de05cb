"""fhir_adapters test helpers: a terminal summary of the SQL-on-FHIR conformance run."""

from __future__ import annotations

from typing import Any

import pytest

# Filled by tests/fhir_adapters/test_sql_on_fhir.py: (tag, outcome) per suite test.
SOF_RESULTS: dict[str, tuple[str, str]] = {}


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not SOF_RESULTS:
        return
    counts: dict[tuple[str, str], int] = {}
    for tag, outcome in SOF_RESULTS.values():
        counts[(tag, outcome)] = counts.get((tag, outcome), 0) + 1
    line = ", ".join(f"{tag} {outcome}: {n}" for (tag, outcome), n in sorted(counts.items()))
    terminalreporter.write_sep("-", "SQL-on-FHIR v2 conformance")
    terminalreporter.write_line(line)
