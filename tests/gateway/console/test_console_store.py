"""The console's tables and the paginated HDAB queries on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.console.store import ConsoleStore, token_hash
from permits import MemorySink
from permits.hdab import HdabService
from permits.hdab_queries import application_counts, ensure_indexes, list_applications
from tests.gateway.conftest import application_body
from trust import generate_jwk


def _exercise(url: str) -> None:
    user, person = generate_jwk(), generate_jwk()
    hdab = HdabService(
        url, hdab_id="hdab-test", country="FI", key=generate_jwk(), sink=MemorySink()
    )
    ensure_indexes(hdab.engine)
    ensure_indexes(hdab.engine)  # idempotent on an existing database
    ids = [hdab.apply(application_body(user, person)).id for _ in range(7)]
    hdab.approve(ids[0])
    assert application_counts(hdab.engine) == {
        "pending": 6,
        "approved": 1,
        "refused": 0,
        "issued": 0,
    }
    page, total = list_applications(hdab.engine, status="pending", offset=2, limit=3)
    assert total == 6 and len(page) == 3 and all(a.status == "pending" for a in page)
    store = ConsoleStore(hdab.engine)
    store.add_staff("rita", "reviewer", "$argon2id$x", now=1000)
    token, csrf = store.open_session("rita", now=1000)
    assert token_hash(token) != token  # only the hash is stored
    sess, why, who = store.session(token, now=1100, idle=900)
    assert sess is not None and sess.csrf == csrf and why == "ok" and who == "rita"
    assert store.session(token, now=3000, idle=900)[1] == "idle_timeout"
    assert store.session(token, now=3001, idle=900)[1] == "no_session"  # gone for good
    for _ in range(3):
        staff = store.record_failure("rita", lock_after=3)
    assert staff.locked and staff.failures == 3
    store.add_decision(ids[0], "approved", "rita", now=1200)
    assert store.approver(ids[0]) == "rita"
    hdab.engine.dispose()


def test_store_and_queries_sqlite(tmp_path: Path) -> None:
    _exercise(f"sqlite:///{tmp_path}/hdab.sqlite")


@pytest.mark.postgres
def test_store_and_queries_postgres(pg_schema_url: str) -> None:
    _exercise(pg_schema_url)
