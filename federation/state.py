"""Persistent permit state at a site: rounds used and request nonces seen.

``PermitGuard`` counts rounds against ``max_rounds`` and refuses replayed
requests, but its default stores live in memory. A ClientApp process may be
restarted (and in deployment runs per Flower run), so the site keeps both in a
small SQLite file: a restart neither resets the round budget nor reopens a
replay window.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteGuardState:
    """Implements ``permits.guard.RoundLedger`` and ``permits.request.ReplayStore``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS rounds (key TEXT PRIMARY KEY, used INTEGER)")
            db.execute("CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, until REAL)")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def reserve(self, key: str, rounds: int, limit: int) -> int | None:
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT used FROM rounds WHERE key = ?", (key,)).fetchone()
            total = (row[0] if row else 0) + rounds
            if total > limit:
                db.execute("ROLLBACK")
                return None
            db.execute("INSERT OR REPLACE INTO rounds (key, used) VALUES (?, ?)", (key, total))
            db.execute("COMMIT")
            return total

    def release(self, key: str, rounds: int) -> None:
        with self._lock, self._connect() as db:
            db.execute("UPDATE rounds SET used = MAX(0, used - ?) WHERE key = ?", (rounds, key))

    def used(self, key: str) -> int:
        with self._connect() as db:
            row = db.execute("SELECT used FROM rounds WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def check_and_add(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM nonces WHERE until <= ?", (now,))
            if db.execute("SELECT 1 FROM nonces WHERE key = ?", (key,)).fetchone():
                db.execute("ROLLBACK")
                return False
            db.execute("INSERT INTO nonces (key, until) VALUES (?, ?)", (key, expires_at))
            db.execute("COMMIT")
            return True
