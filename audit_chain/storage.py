"""Storage of entries, tree nodes and checkpoints through SQLModel (SQLite or PostgreSQL).

Tables (all keyed by ``log_id`` so one database can hold several logs):

* ``audit_log``        -- the head: current tree size of each log;
* ``audit_entry``      -- ``(log_id, idx)`` -> the exact event bytes (+ type, org, time for listing);
* ``audit_node``       -- ``(log_id, level, idx)`` -> hash of every *complete* subtree;
* ``audit_checkpoint`` -- ``(log_id, size)`` -> signed tree head (C2SP checkpoint note);
* ``audit_cosignature`` -- ``(log_id, size, witness)`` -> a witness's cosignature line
  on that checkpoint, collected by the log from the witnesses it asks;
* ``audit_witness``    -- ``origin`` -> the newest checkpoint this organisation's
  *witness* cosigned for another log (its whole memory of that log).

Why this design:

* One append (one event or a batch) is ONE transaction: entries, the nodes they
  complete, the new head size and (optionally) the checkpoint covering the
  batch. A crash leaves either all of it or none of it.
* Appenders in several processes form one gap-free sequence because the
  transaction first takes a lock both databases honour: ``BEGIN IMMEDIATE`` on
  SQLite (the database write lock), ``pg_advisory_xact_lock`` keyed by the log
  id on PostgreSQL. Under the lock it reads the head size and the O(log n)
  frontier nodes, computes new nodes in memory and writes them with executemany.
* Nodes never change once written, so proofs for any past size read O(log n)
  rows in one query and need no lock.
* SQLite runs in WAL mode (readers never block the appender) with
  ``synchronous=FULL`` by default: a checkpoint handed out must never be ahead
  of what survives a power cut, or honest clients would see a rollback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, SQLModel

from audit_chain import merkle
from audit_chain.errors import AuditConfigError, AuditHeadError, AuditStorageError
from audit_chain.schema import is_identifier


class AuditLogHead(SQLModel, table=True):
    __tablename__ = "audit_log"

    log_id: str = Field(sa_column=Column(String(128), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False, default=0))


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    log_id: str = Field(sa_column=Column(String(128), primary_key=True))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    type: str = Field(sa_column=Column(String(64), nullable=False))
    org: str = Field(sa_column=Column(String(128), nullable=False))
    time: str = Field(sa_column=Column(String(40), nullable=False))


class AuditNode(SQLModel, table=True):
    __tablename__ = "audit_node"

    log_id: str = Field(sa_column=Column(String(128), primary_key=True))
    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditCheckpointRow(SQLModel, table=True):
    __tablename__ = "audit_checkpoint"

    log_id: str = Field(sa_column=Column(String(128), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    token: str = Field(sa_column=Column(Text, nullable=False))


class AuditCosignatureRow(SQLModel, table=True):
    __tablename__ = "audit_cosignature"

    log_id: str = Field(sa_column=Column(String(128), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    witness: str = Field(sa_column=Column(String(256), primary_key=True))
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    line: str = Field(sa_column=Column(Text, nullable=False))


class AuditWitnessRow(SQLModel, table=True):
    __tablename__ = "audit_witness"

    origin: str = Field(sa_column=Column(String(256), primary_key=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    root: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))


HEADS = AuditLogHead.__table__  # type: ignore[attr-defined]
ENTRIES = AuditEntry.__table__  # type: ignore[attr-defined]
NODES = AuditNode.__table__  # type: ignore[attr-defined]
CHECKPOINTS = AuditCheckpointRow.__table__  # type: ignore[attr-defined]
COSIGNATURES = AuditCosignatureRow.__table__  # type: ignore[attr-defined]
WITNESS = AuditWitnessRow.__table__  # type: ignore[attr-defined]
TABLES = [HEADS, ENTRIES, NODES, CHECKPOINTS, COSIGNATURES, WITNESS]

SignCheckpoint = Callable[[int, bytes], str]
"""``(size, root) -> checkpoint note``: signs a tree head while the append lock is held."""
Row = tuple[bytes, str, str, str]
"""``(leaf bytes, type, org, time)``."""
BuildRows = Callable[[int], Sequence[Row]]
"""``first index -> rows``: builds (signs) the leaves once their position is known, under the lock."""
WitnessStep = Callable[[int, bytes | None], tuple[int, bytes, str]]
"""``(known size, known root) -> (new size, new root, note)``; raises to refuse."""

_SCHEMA_LOCK = 0x45484453_41554454  # "EHDSAUDT": serialises CREATE TABLE across processes


def normalize_url(url: str | Path) -> str:
    """Accept a SQLite path, ``sqlite:///...``, or a PostgreSQL URL (psycopg 3 driver)."""
    raw = str(url)
    if raw.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + raw.split("://", 1)[1]
    if raw.startswith(("sqlite:", "postgresql+")):
        return raw
    if "://" in raw:
        raise AuditConfigError("database URL must be a SQLite path/URL or a PostgreSQL URL")
    return f"sqlite:///{Path(raw).expanduser().resolve()}"


def redact_url(url: str) -> str:
    """The URL without a password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def lock_key(log_id: str, prefix: bytes = b"ehds-audit:") -> int:
    """64-bit signed advisory-lock key for a log id (or, with another prefix, a witness origin)."""
    return int.from_bytes(hashlib.sha256(prefix + log_id.encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class StoredEntry:
    index: int
    leaf: bytes
    type: str
    org: str
    time: str


@dataclass(frozen=True)
class AppendResult:
    first: int
    size: int
    root: bytes
    checkpoint: str | None


class LogStore:
    """SQL storage for one or more logs; see the module docstring for the design."""

    def __init__(self, url: str | Path, *, durable: bool = True) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise AuditConfigError(f"bad database URL {redact_url(self.url)}") from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise AuditConfigError(f"unsupported database {self.dialect} (SQLite or PostgreSQL)")
        self.engine = self._make_engine(parsed.database, durable)
        self._placeholder = "?" if self.dialect == "sqlite" else "%s"
        # Reads run in autocommit: no BEGIN/ROLLBACK round trips around a lookup.
        # Nodes and entries below the head never change, so no snapshot is needed.
        self.reads = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._create_schema()

    # ------------------------------------------------------------ set-up

    def _make_engine(self, database: str | None, durable: bool) -> Engine:
        if self.dialect == "postgresql":
            return create_engine(self.url, pool_recycle=1800, pool_size=5, max_overflow=5)
        memory = database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 60, "check_same_thread": False}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(self.url, **kwargs)
        sync = "FULL" if durable else "NORMAL"

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sync}")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        return engine

    def _create_schema(self) -> None:
        try:
            with self._locked(None) as conn:
                SQLModel.metadata.create_all(conn, tables=TABLES)
        except SQLAlchemyError as exc:
            raise AuditStorageError(f"cannot create audit tables: {type(exc).__name__}") from exc

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ locking

    @contextmanager
    def _locked(self, log_id: str | int | None) -> Iterator[Connection]:
        """A write transaction holding the per-log lock (the schema lock when None, a raw key when int)."""
        with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
            else:
                with conn.begin():
                    if log_id is None:
                        key = _SCHEMA_LOCK
                    elif isinstance(log_id, int):
                        key = log_id
                    else:
                        key = lock_key(log_id)
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
                    yield conn

    # ------------------------------------------------------------ writing

    def append(
        self,
        log_id: str,
        leaves: Sequence[Row] | BuildRows,
        *,
        sign_checkpoint: SignCheckpoint | None = None,
    ) -> AppendResult:
        """Append ``(leaf bytes, type, org, time)`` rows in one locked transaction.

        ``leaves`` may be a function of the first index: events that carry their
        own position are signed here, under the lock. ``sign_checkpoint(size,
        root) -> note`` (optional) is called under the lock so the checkpoint
        stored with the batch covers exactly it. A signing log refuses to append
        (``AUDIT_HEAD_MISMATCH``) when its head is not what its newest checkpoint
        signed: entries written behind its back are never checkpointed for good.
        """
        if not is_identifier(log_id):
            raise AuditConfigError("log id must be an identifier")
        try:
            with self._locked(log_id) as conn:
                size = self._head(conn, log_id, create=True)
                frontier = self._frontier(conn, log_id, size)
                if sign_checkpoint is not None:
                    self._check_head(conn, log_id, size, merkle.frontier_root(frontier))
                if callable(leaves):
                    leaves = leaves(size)
                hashes = [merkle.leaf_hash(leaf) for leaf, *_ in leaves]
                nodes = merkle.extend(size, frontier, hashes)
                if leaves:
                    # driver-level executemany: SQLAlchemy's per-row parameter processing
                    # costs more than the insert itself at thousands of rows per second
                    ph = self._placeholder
                    conn.exec_driver_sql(
                        f"INSERT INTO audit_entry (log_id, idx, leaf, type, org, time) "
                        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
                        [
                            (log_id, size + i, leaf, t, o, w)
                            for i, (leaf, t, o, w) in enumerate(leaves)
                        ],
                    )
                    conn.exec_driver_sql(
                        f"INSERT INTO audit_node (log_id, level, idx, hash) VALUES ({ph}, {ph}, {ph}, {ph})",
                        [(log_id, lv, ix, h) for lv, ix, h in nodes],
                    )
                new_size = size + len(leaves)
                conn.execute(update(HEADS).where(HEADS.c.log_id == log_id).values(size=new_size))
                root = merkle.frontier_root(frontier)
                token: str | None = None
                if sign_checkpoint is not None and leaves:
                    token = sign_checkpoint(new_size, root)
                    self._insert_checkpoint(conn, log_id, new_size, root, token)
        except SQLAlchemyError as exc:
            raise AuditStorageError(
                f"append failed: {type(exc).__name__}: {exc.args[0] if exc.args else ''}"[:300]
            ) from exc
        return AppendResult(size, new_size, root, token)

    def _check_head(self, conn: Connection, log_id: str, size: int, root: bytes) -> None:
        latest = conn.execute(
            select(CHECKPOINTS.c.size, CHECKPOINTS.c.root)
            .where(CHECKPOINTS.c.log_id == log_id)
            .order_by(CHECKPOINTS.c.size.desc())
            .limit(1)
        ).first()
        if latest is None:
            if size > 0:
                raise AuditHeadError(
                    f"log holds {size} entries but no checkpoint: refusing to append", index=0
                )
            return
        if int(latest[0]) != size or bytes(latest[1]) != root:
            raise AuditHeadError(
                f"log head (size {size}) disagrees with its newest checkpoint (size "
                f"{int(latest[0])}): refusing to append or checkpoint",
                index=min(size, int(latest[0])),
            )

    def add_checkpoint(self, log_id: str, sign: SignCheckpoint) -> tuple[int, bytes, str]:
        """Sign and store a checkpoint for the current head, unless one exists (under the lock).

        Refused (``AUDIT_HEAD_MISMATCH``) when an older checkpoint exists that the
        head does not match: a signing log appends and checkpoints together, so a
        head ahead of its checkpoint was written by someone else.
        """
        with self._locked(log_id) as conn:
            current = self._head(conn, log_id, create=True)
            root = merkle.root_hash(current, _ConnReader(conn, log_id))
            existing = conn.execute(
                select(CHECKPOINTS.c.token).where(
                    and_(CHECKPOINTS.c.log_id == log_id, CHECKPOINTS.c.size == current)
                )
            ).scalar_one_or_none()
            if existing is not None:
                return current, root, str(existing)
            has_any = conn.execute(
                select(func.count()).select_from(CHECKPOINTS).where(CHECKPOINTS.c.log_id == log_id)
            ).scalar_one()
            if has_any:
                self._check_head(conn, log_id, current, root)
            token = sign(current, root)
            self._insert_checkpoint(conn, log_id, current, root, token)
            return current, root, token

    @staticmethod
    def _insert_checkpoint(
        conn: Connection, log_id: str, size: int, root: bytes, token: str
    ) -> None:
        conn.execute(insert(CHECKPOINTS).values(log_id=log_id, size=size, root=root, token=token))

    def _head(self, conn: Connection, log_id: str, *, create: bool) -> int:
        size = conn.execute(
            select(HEADS.c.size).where(HEADS.c.log_id == log_id)
        ).scalar_one_or_none()
        if size is None:
            if not create:
                return 0
            conn.execute(insert(HEADS).values(log_id=log_id, size=0))
            return 0
        return int(size)

    def _frontier(self, conn: Connection, log_id: str, size: int) -> dict[int, bytes]:
        ids = merkle.frontier_ids(size)
        found = _read_nodes(conn, log_id, ids)
        missing = set(ids) - found.keys()
        if missing:
            raise AuditStorageError(
                f"stored tree lacks frontier node {min(missing)}: refusing to append"
            )
        return {level: found[(level, idx)] for level, idx in ids}

    # ------------------------------------------------------------ witnessing

    def add_cosignatures(
        self, log_id: str, size: int, rows: Sequence[tuple[str, int, str]]
    ) -> None:
        """Store ``(witness name, timestamp, signature line)`` cosignatures of checkpoint ``size``."""
        if not rows:
            return
        try:
            with self.engine.begin() as conn:
                for witness, timestamp, line in rows:
                    conn.execute(
                        COSIGNATURES.delete().where(
                            and_(
                                COSIGNATURES.c.log_id == log_id,
                                COSIGNATURES.c.size == size,
                                COSIGNATURES.c.witness == witness,
                            )
                        )
                    )
                    conn.execute(
                        insert(COSIGNATURES).values(
                            log_id=log_id,
                            size=size,
                            witness=witness,
                            timestamp=timestamp,
                            line=line,
                        )
                    )
        except SQLAlchemyError as exc:
            raise AuditStorageError(f"cannot store cosignatures: {type(exc).__name__}") from exc

    def cosignatures(self, log_id: str) -> list[tuple[int, str, int, str]]:
        """``(size, witness, timestamp, line)`` of stored cosignatures, smallest size first."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(
                    COSIGNATURES.c.size,
                    COSIGNATURES.c.witness,
                    COSIGNATURES.c.timestamp,
                    COSIGNATURES.c.line,
                )
                .where(COSIGNATURES.c.log_id == log_id)
                .order_by(COSIGNATURES.c.size, COSIGNATURES.c.witness)
            )
            return [(int(s), str(w), int(t), str(ln)) for s, w, t, ln in rows]

    def witness_advance(self, origin: str, step: WitnessStep) -> tuple[int, bytes, str]:
        """Run ``step(known size, known root)`` and store its result, atomically per origin.

        The check against the stored size and the write happen under one lock
        (tlog-witness: otherwise two racing requests could roll the state back).
        """
        try:
            with self._locked(lock_key(origin, b"ehds-witness:")) as conn:
                row = conn.execute(
                    select(WITNESS.c.size, WITNESS.c.root).where(WITNESS.c.origin == origin)
                ).first()
                known_size, known_root = (0, None) if row is None else (int(row[0]), bytes(row[1]))
                size, root, note = step(known_size, known_root)
                if row is None:
                    conn.execute(
                        insert(WITNESS).values(origin=origin, size=size, root=root, note=note)
                    )
                else:
                    conn.execute(
                        update(WITNESS)
                        .where(WITNESS.c.origin == origin)
                        .values(size=size, root=root, note=note)
                    )
                return size, root, note
        except SQLAlchemyError as exc:
            raise AuditStorageError(f"witness state update failed: {type(exc).__name__}") from exc

    def witness_state(self, origin: str) -> tuple[int, bytes, str] | None:
        """The newest checkpoint this database's witness cosigned for ``origin``."""
        with self.reads.connect() as conn:
            row = conn.execute(
                select(WITNESS.c.size, WITNESS.c.root, WITNESS.c.note).where(
                    WITNESS.c.origin == origin
                )
            ).first()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def witness_origins(self) -> list[str]:
        with self.reads.connect() as conn:
            return [
                str(o)
                for o in conn.execute(select(WITNESS.c.origin).order_by(WITNESS.c.origin)).scalars()
            ]

    # ------------------------------------------------------------ reading

    def has_log(self, log_id: str) -> bool:
        with self.reads.connect() as conn:
            return (
                conn.execute(select(HEADS.c.size).where(HEADS.c.log_id == log_id)).first()
                is not None
            )

    def size(self, log_id: str) -> int:
        with self.reads.connect() as conn:
            return self._head(conn, log_id, create=False)

    def log_ids(self) -> list[str]:
        with self.reads.connect() as conn:
            return [
                str(r)
                for r in conn.execute(select(HEADS.c.log_id).order_by(HEADS.c.log_id)).scalars()
            ]

    def get_nodes(self, log_id: str, ids: Collection[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        with self.reads.connect() as conn:
            return _read_nodes(conn, log_id, ids)

    def nodes_in(self, log_id: str, level: int, lo: int, hi: int) -> dict[int, bytes]:
        """Stored nodes of one level with ``lo <= idx < hi``."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(NODES.c.idx, NODES.c.hash).where(
                    and_(
                        NODES.c.log_id == log_id,
                        NODES.c.level == level,
                        NODES.c.idx >= lo,
                        NODES.c.idx < hi,
                    )
                )
            )
            return {int(i): bytes(h) for i, h in rows}

    def entries(
        self, log_id: str, start: int = 0, end: int | None = None, *, batch: int = 2000
    ) -> Iterator[StoredEntry]:
        """Entries in index order (keyset pagination: constant memory, any log size)."""
        pos = start
        while end is None or pos < end:
            limit = batch if end is None else min(batch, end - pos)
            with self.reads.connect() as conn:
                rows = conn.execute(
                    select(
                        ENTRIES.c.idx, ENTRIES.c.leaf, ENTRIES.c.type, ENTRIES.c.org, ENTRIES.c.time
                    )
                    .where(and_(ENTRIES.c.log_id == log_id, ENTRIES.c.idx >= pos))
                    .order_by(ENTRIES.c.idx)
                    .limit(limit)
                ).all()
            if not rows:
                return
            for idx, leaf, typ, org, when in rows:
                if end is not None and idx >= end:
                    return
                yield StoredEntry(int(idx), bytes(leaf), str(typ), str(org), str(when))
            pos = int(rows[-1][0]) + 1

    def first_entry_beyond_head(self, log_id: str) -> int | None:
        """Smallest stored index >= the head size (None on an intact log), in one statement."""
        head = select(HEADS.c.size).where(HEADS.c.log_id == log_id).scalar_subquery()
        with self.reads.connect() as conn:
            found = conn.execute(
                select(func.min(ENTRIES.c.idx)).where(
                    and_(ENTRIES.c.log_id == log_id, ENTRIES.c.idx >= func.coalesce(head, 0))
                )
            ).scalar_one_or_none()
        return None if found is None else int(found)

    def entry_count(self, log_id: str) -> int:
        with self.reads.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(ENTRIES).where(ENTRIES.c.log_id == log_id)
                ).scalar_one()
            )

    def checkpoints(self, log_id: str, *, since: int = 0) -> list[tuple[int, bytes, str]]:
        """``(size, root, token)`` of stored checkpoints with size >= since, smallest first."""
        with self.reads.connect() as conn:
            rows = conn.execute(
                select(CHECKPOINTS.c.size, CHECKPOINTS.c.root, CHECKPOINTS.c.token)
                .where(and_(CHECKPOINTS.c.log_id == log_id, CHECKPOINTS.c.size >= since))
                .order_by(CHECKPOINTS.c.size)
            )
            return [(int(s), bytes(r), str(t)) for s, r, t in rows]

    def latest_checkpoint(self, log_id: str) -> tuple[int, bytes, str] | None:
        with self.reads.connect() as conn:
            row = conn.execute(
                select(CHECKPOINTS.c.size, CHECKPOINTS.c.root, CHECKPOINTS.c.token)
                .where(CHECKPOINTS.c.log_id == log_id)
                .order_by(CHECKPOINTS.c.size.desc())
                .limit(1)
            ).first()
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def reader(self, log_id: str) -> _StoreReader:
        return _StoreReader(self, log_id)

    @contextmanager
    def reading(self, log_id: str) -> Iterator[_ConnReader]:
        """One pooled connection for several reads (head size + proof nodes)."""
        with self.reads.connect() as conn:
            yield _ConnReader(conn, log_id)


def _read_nodes(
    conn: Connection, log_id: str, ids: Collection[merkle.NodeId]
) -> dict[merkle.NodeId, bytes]:
    """All requested nodes in one statement: a UNION ALL of one primary-key lookup per level.

    Plain SQL on purpose: an OR of conditions or a row-value IN list makes SQLite
    scan the whole log, and building the varying UNION through SQLAlchemy's
    compiler costs ~1000x the lookups themselves.
    """
    if not ids:
        return {}
    by_level: dict[int, list[int]] = {}
    for level, idx in ids:
        by_level.setdefault(level, []).append(idx)
    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    parts: list[str] = []
    params: list[object] = []
    for level, idxs in sorted(by_level.items()):
        marks = ", ".join([ph] * len(idxs))
        parts.append(
            f"SELECT level, idx, hash FROM audit_node WHERE log_id = {ph} AND level = {ph} AND idx IN ({marks})"
        )
        params += [log_id, level, *sorted(idxs)]
    rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params))
    return {(int(lv), int(ix)): bytes(h) for lv, ix, h in rows}


class _StoreReader:
    """:class:`merkle.NodeReader` over one log of a store (one query per proof)."""

    def __init__(self, store: LogStore, log_id: str) -> None:
        self.store = store
        self.log_id = log_id

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return self.store.get_nodes(self.log_id, ids)


class _ConnReader:
    """:class:`merkle.NodeReader` (and head size) on one open connection."""

    def __init__(self, conn: Connection, log_id: str) -> None:
        self.conn = conn
        self.log_id = log_id

    def size(self) -> int:
        size = self.conn.execute(
            select(HEADS.c.size).where(HEADS.c.log_id == self.log_id)
        ).scalar_one_or_none()
        return 0 if size is None else int(size)

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return _read_nodes(self.conn, self.log_id, ids)


__all__ = [
    "CHECKPOINTS",
    "COSIGNATURES",
    "ENTRIES",
    "HEADS",
    "NODES",
    "TABLES",
    "WITNESS",
    "AppendResult",
    "AuditCheckpointRow",
    "AuditCosignatureRow",
    "AuditEntry",
    "AuditLogHead",
    "AuditNode",
    "AuditWitnessRow",
    "LogStore",
    "StoredEntry",
    "lock_key",
    "normalize_url",
    "redact_url",
]
