"""``AuditLog``: the facade other packages use to append, prove and checkpoint.

    signer = EventSigner.generate("hospital-a")              # the log's own key
    log = AuditLog.open("audit.db", log_id="hospital-a", signer=signer)
    index = log.append(token)                                # token: a signed event (sink.py)
    cp = log.checkpoint()                                    # newest signed tree head
    proof = log.inclusion_proof(index, cp.size)              # list[bytes], <= ceil(log2 n) hashes
    cproof = log.consistency_proof(old.size, cp.size)

``url`` is a SQLite path or URL (embedded default, WAL) or a PostgreSQL URL
(``postgresql://`` / ``postgresql+psycopg://``). Every append (single or batch)
is one transaction that also stores a checkpoint covering it when the log has
a ``signer``. Appends check the event's shape and v1 schema always, and its
signature too when the log is given a ``trust`` store, so nothing malformed or
outside the schema is ever written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from audit_chain import merkle
from audit_chain.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from audit_chain.errors import AuditConfigError, AuditRangeError
from audit_chain.events import Event, parse_event, verify_event
from audit_chain.schema import is_identifier
from audit_chain.signers import EventSigner, TrustStore
from audit_chain.storage import LogStore, StoredEntry, redact_url


@dataclass(frozen=True)
class Entry:
    """One log entry: its index, the exact bytes (a compact JWS) and listing columns."""

    index: int
    token: str
    type: str
    org: str
    time: str

    @property
    def leaf(self) -> bytes:
        return self.token.encode("ascii")

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.leaf)

    @classmethod
    def from_stored(cls, row: StoredEntry) -> Entry:
        return cls(
            row.index, row.leaf.decode("ascii", errors="replace"), row.type, row.org, row.time
        )


class AuditLog:
    """One append-only Merkle log in a SQL database (see the module docstring)."""

    def __init__(
        self,
        store: LogStore,
        log_id: str = "default",
        *,
        signer: EventSigner | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        if not is_identifier(log_id):
            raise AuditConfigError("log id must match [A-Za-z0-9._:@-]{1,128}")
        self.store = store
        self.log_id = log_id
        self.signer = signer
        self.trust = trust
        self._reader = store.reader(log_id)

    @classmethod
    def open(
        cls,
        url: str | Path,
        *,
        log_id: str = "default",
        signer: EventSigner | None = None,
        trust: TrustStore | None = None,
        durable: bool = True,
    ) -> AuditLog:
        """Open (creating tables if needed) the log ``log_id`` in the database at ``url``."""
        return cls(LogStore(url, durable=durable), log_id, signer=signer, trust=trust)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({redact_url(self.store.url)!r}, log_id={self.log_id!r})"

    # ------------------------------------------------------------ appending

    def _check(self, token: str | bytes) -> tuple[bytes, Event]:
        if self.trust is not None:
            event = verify_event(token, self.trust).event
        else:
            event = parse_event(token)
        leaf = token.encode("ascii") if isinstance(token, str) else bytes(token)
        return leaf, event

    def _sign(self, size: int, root: bytes) -> str:
        assert self.signer is not None
        return sign_checkpoint(self.signer, self.log_id, size, root).token

    def append(self, token: str | bytes) -> int:
        """Append one signed event; returns its index."""
        return self.append_many([token]).start

    def append_many(self, tokens: Sequence[str | bytes]) -> range:
        """Append a batch in one transaction (one checkpoint covers it); returns the indexes.

        Every token is checked before anything is written: one bad event refuses
        the whole batch and nothing is lost from the log.
        """
        return self._append_checked([self._check(token) for token in tokens])

    def _append_checked(self, items: Sequence[tuple[bytes, Event]]) -> range:
        """Append events whose shape and schema were already checked (e.g. just built)."""
        rows = [(leaf, event.type, event.org, event.time) for leaf, event in items]
        result = self.store.append(
            self.log_id, rows, sign_checkpoint=self._sign if self.signer is not None else None
        )
        return range(result.first, result.size)

    # ------------------------------------------------------------ reading

    def size(self) -> int:
        """Current tree size (number of entries)."""
        return self.store.size(self.log_id)

    def root(self, size: int | None = None) -> bytes:
        """``MTH`` of the first ``size`` entries (default: all), from stored nodes."""
        with self.store.reading(self.log_id) as reader:
            return merkle.root_hash(_size_arg(reader.size(), size), reader)

    def entry(self, index: int) -> Entry:
        for row in self.store.entries(self.log_id, index, index + 1):
            return Entry.from_stored(row)
        raise AuditRangeError(f"no entry {index} in log of size {self.size()}", index=index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        for row in self.store.entries(self.log_id, start, end):
            yield Entry.from_stored(row)

    def get_nodes(self, ids: Collection[merkle.NodeId]) -> Mapping[merkle.NodeId, bytes]:
        return self._reader.get_nodes(ids)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path of entry ``index`` in the tree of ``size`` entries (default: current)."""
        with self.store.reading(self.log_id) as reader:
            return merkle.inclusion_proof(index, _size_arg(reader.size(), size), reader)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Proof that the tree of ``size2`` entries (default: current) extends ``size1``."""
        with self.store.reading(self.log_id) as reader:
            return merkle.consistency_proof(size1, _size_arg(reader.size(), size2), reader)

    # ------------------------------------------------------------ checkpoints

    def latest_checkpoint(self) -> Checkpoint | None:
        """Newest stored checkpoint (signature not re-verified here; see verify_log)."""
        row = self.store.latest_checkpoint(self.log_id)
        return None if row is None else parse_checkpoint(row[2])

    def checkpoint(self) -> Checkpoint:
        """Signed checkpoint of the current tree, signing (and storing) a new one if needed."""
        latest = self.latest_checkpoint()
        if latest is not None and latest.size == self.size():
            return latest
        if self.signer is None:
            if latest is not None:
                return latest
            raise AuditConfigError("log has no checkpoint yet and no signer to make one")
        _, _, token = self.store.add_checkpoint(self.log_id, self._sign)
        return parse_checkpoint(token)

    def checkpoints(self, since: int = 0) -> list[Checkpoint]:
        """All stored checkpoints with size >= since, smallest first."""
        return [parse_checkpoint(t) for _, _, t in self.store.checkpoints(self.log_id, since=since)]


def _size_arg(current: int, size: int | None) -> int:
    if size is None:
        return current
    if not 0 <= size <= current:
        raise AuditRangeError(f"tree size {size} is outside 0..{current}")
    return size


__all__ = ["AuditLog", "Entry"]
