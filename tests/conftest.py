"""Shared fixtures: where ../shared lives, the PostgreSQL URL, skip rules."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EHDS_SHARED_DIR", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path inside ../shared, or skip the calling test with a clear reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set EHDS_SHARED_DIR or place ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test database URL; PostgreSQL tests skip only when none is given."""
    url = os.environ.get("EHDS_TEST_DATABASE_URL")
    if not url:
        pytest.skip("EHDS_TEST_DATABASE_URL not set: PostgreSQL tests skipped (CI always sets it)")
    return url


@pytest.fixture
def pg_schema_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema per test, dropped afterwards.

    Tests get isolation without creating databases: the URL carries
    ``options=-csearch_path=<schema>`` so every connection lands in it.
    """
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
