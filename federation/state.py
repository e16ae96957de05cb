"""Persistent permit state at a site: rounds used, request nonces seen, status-list versions.

``PermitGuard`` counts rounds against ``max_rounds`` and refuses replayed
requests, but its default stores live in memory. A ClientApp process may be
restarted (and in deployment runs per Flower run), so the site keeps both in a
small SQLite file: a restart neither resets the round budget nor reopens a
replay window. The highest status-list version accepted per HDAB is kept here
too, so a restart with an older list is refused (``status_list_rollback``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteGuardState:
    """Implements ``RoundLedger``, ``ReplayStore`` and ``permits.statuslist.VersionFloor``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS rounds (key TEXT PRIMARY KEY, used INTEGER)")
            db.execute("CREATE TABLE IF NOT EXISTS nonces (key TEXT PRIMARY KEY, until REAL)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS status_versions (hdab TEXT PRIMARY KEY, version INTEGER)"
            )

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

    def highest(self, hdab: str) -> int | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT version FROM status_versions WHERE hdab = ?", (hdab,)
            ).fetchone()
        return int(row[0]) if row else None

    def raise_to(self, hdab: str, version: int) -> None:
        """Never lowers: the floor only moves up, whatever order writers come in."""
        with self._lock, self._connect() as db:
            db.execute(
                "INSERT INTO status_versions (hdab, version) VALUES (?, ?) "
                "ON CONFLICT(hdab) DO UPDATE SET version = MAX(version, excluded.version)",
                (hdab, version),
            )
