"""Fixtures: keys, a trust store, and a database URL for SQLite and (marked) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_chain import EventSigner, TrustStore
from audit_chain.log import AuditLog
from audit_chain.sink import SignedLogSink

LOG_ID = "hospital-a"


@pytest.fixture(scope="session")
def log_key() -> EventSigner:
    return EventSigner.generate("hospital-a")


@pytest.fixture(scope="session")
def actor() -> EventSigner:
    return EventSigner.generate("hdab-nl")


@pytest.fixture(scope="session")
def actor_es256() -> EventSigner:
    return EventSigner.generate("coordinator", alg="ES256")


@pytest.fixture(scope="session")
def trust(log_key: EventSigner, actor: EventSigner, actor_es256: EventSigner) -> TrustStore:
    return TrustStore([log_key.trusted_key(), actor.trusted_key(), actor_es256.trusted_key()])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
def log(db_url: str, log_key: EventSigner) -> Iterator[AuditLog]:
    opened = AuditLog.open(db_url, log_id=LOG_ID, signer=log_key)
    yield opened
    opened.close()


@pytest.fixture
def sink(log: AuditLog, actor: EventSigner) -> SignedLogSink:
    return SignedLogSink(log, actor)


HASH = "sha256:" + "ab" * 32


@pytest.fixture
def witness_urls(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[str]]:
    """Three databases for three witnesses, on the same backend as ``db_url``."""
    if not db_url.startswith("postgresql"):
        yield [str(tmp_path / f"witness-{i}.db") for i in range(3)]
        return
    import uuid

    import psycopg

    base = str(request.getfixturevalue("postgres_url"))
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    schemas = [f"w_{uuid.uuid4().hex[:12]}" for _ in range(3)]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for s in schemas:
            conn.execute(f"CREATE SCHEMA {s}")
    sep = "&" if "?" in base else "?"
    yield [f"{base}{sep}options=-csearch_path%3D{s}" for s in schemas]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for s in schemas:
            conn.execute(f"DROP SCHEMA {s} CASCADE")
