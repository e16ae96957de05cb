"""``AuditLog``: the facade other packages use to append, prove and checkpoint.

    signer = EventSigner.generate("hospital-a")              # the log's own key (Ed25519)
    log = AuditLog.open("audit.db", log_id="hospital-a", signer=signer)
    index = log.append(token)        # token: an event signed for (origin "hospital-a", index = size)
    cp = log.checkpoint()                                    # newest signed tree head
    proof = log.inclusion_proof(index, cp.size)              # list[bytes], <= ceil(log2 n) hashes
    cproof = log.consistency_proof(old.size, cp.size)

``url`` is a SQLite path or URL (embedded default, WAL) or a PostgreSQL URL
(``postgresql://`` / ``postgresql+psycopg://``). Every append (single or batch)
is one transaction that also stores a checkpoint covering it when the log has
a ``signer``. Appends check the event's shape and v2 schema always, and its
signature too when the log is given a ``trust`` store, so nothing malformed or
outside the schema is ever written. Every event names this log and its index
(``log.origin``/``log.index``); the sink signs it under the append lock, when
the index is known, and an event signed for another position is refused.

Without ``log_id`` the log is named after the signer's organisation; a reader
without a signer opens the only log in the database. Listeners registered with
``on_checkpoint`` hear of each new checkpoint after its transaction committed
(e.g. to ask witnesses for cosignatures in the background).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from audit_chain import merkle
from audit_chain.checkpoint import Checkpoint, log_note_signer, parse_checkpoint, sign_checkpoint
from audit_chain.errors import AuditConfigError, AuditError, AuditPositionError, AuditRangeError
from audit_chain.events import Event, parse_event, sign_built, verify_event
from audit_chain.note import parse_note, verify_note_signature
from audit_chain.schema import is_identifier
from audit_chain.signers import EventSigner, TrustStore
from audit_chain.storage import LogStore, StoredEntry, redact_url


@dataclass(frozen=True)
class Entry:
    """One log entry: its index, the exact bytes (a compact JWS) and what the signed leaf says.

    ``type``/``org``/``time`` are read from the leaf itself, never from the
    database's side columns (which only serve indexes and can be edited).
    ``type`` is ``"<unreadable>"`` when the leaf does not parse.
    """

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
        token = row.leaf.decode("ascii", errors="replace")
        try:
            event = parse_event(row.leaf)
        except AuditError:
            return cls(row.index, token, "<unreadable>", "?", "?")
        return cls(row.index, token, event.type, event.org, event.time)


class AuditLog:
    """One append-only Merkle log in a SQL database (see the module docstring)."""

    def __init__(
        self,
        store: LogStore,
        log_id: str | None = None,
        *,
        signer: EventSigner | None = None,
        trust: TrustStore | None = None,
    ) -> None:
        if log_id is None:
            log_id = _default_log_id(store, signer)
        if not is_identifier(log_id):
            raise AuditConfigError("log id must match [A-Za-z0-9._:@-]{1,128}")
        self.store = store
        self.log_id = log_id
        self.signer = signer
        self.trust = trust
        self._reader = store.reader(log_id)
        self._note_signer = log_note_signer(signer, log_id) if signer is not None else None
        self._listeners: list[Callable[[int], None]] = []

    @classmethod
    def open(
        cls,
        url: str | Path,
        *,
        log_id: str | None = None,
        signer: EventSigner | None = None,
        trust: TrustStore | None = None,
        durable: bool = True,
    ) -> AuditLog:
        """Open (creating tables if needed) the log ``log_id`` in the database at ``url``."""
        store = LogStore(url, durable=durable)
        try:
            return cls(store, log_id, signer=signer, trust=trust)
        except AuditError:
            store.close()
            raise

    def on_checkpoint(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(size)`` after each append that stored a new checkpoint (must not block)."""
        self._listeners.append(listener)

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
        if event.origin != self.log_id:
            raise AuditPositionError(f"event was signed for log {event.origin!r}, not this one")
        leaf = token.encode("ascii") if isinstance(token, str) else bytes(token)
        return leaf, event

    def _sign(self, size: int, root: bytes) -> str:
        assert self._note_signer is not None
        return sign_checkpoint(self._note_signer, self.log_id, size, root).note

    def append(self, token: str | bytes) -> int:
        """Append one event signed for this log at index ``size()``; returns its index."""
        return self.append_many([token]).start

    def append_many(self, tokens: Sequence[str | bytes]) -> range:
        """Append a batch in one transaction (one checkpoint covers it); returns the indexes.

        Every token is checked before anything is written: one bad event refuses
        the whole batch and nothing is lost from the log. Each must have been
        signed for exactly the index it lands at (``AUDIT_MISPLACED_EVENT``).
        """
        items = [self._check(token) for token in tokens]

        def rows(first: int) -> list[tuple[bytes, str, str, str]]:
            for i, (_, event) in enumerate(items):
                if event.index != first + i:
                    raise AuditPositionError(
                        f"event signed for index {event.index} would land at {first + i}",
                        index=first + i,
                    )
            return [(leaf, e.type, e.org, e.time) for leaf, e in items]

        return self._store_rows(rows)

    def _append_drafts(self, drafts: Sequence[tuple[EventSigner, Event]]) -> range:
        """Place, sign and append schema-checked draft events (signed under the append lock)."""
        origin = self.log_id

        def rows(first: int) -> list[tuple[bytes, str, str, str]]:
            out = []
            for i, (signer, draft) in enumerate(drafts):
                event = draft.placed(origin, first + i)
                out.append(
                    (sign_built(signer, event).encode("ascii"), event.type, event.org, event.time)
                )
            return out

        return self._store_rows(rows)

    def _store_rows(self, rows: Callable[[int], Sequence[tuple[bytes, str, str, str]]]) -> range:
        result = self.store.append(
            self.log_id, rows, sign_checkpoint=self._sign if self.signer is not None else None
        )
        if result.checkpoint is not None:
            for listener in self._listeners:
                listener(result.size)
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
        """Newest stored checkpoint (see verify_log for full verification).

        ``kid`` is set when the note carries a valid signature of this log's signer.
        """
        row = self.store.latest_checkpoint(self.log_id)
        return None if row is None else self._own(parse_checkpoint(row[2]))

    def _own(self, cp: Checkpoint) -> Checkpoint:
        if self._note_signer is None or self.signer is None:
            return cp
        try:
            mine = verify_note_signature(parse_note(cp.note), self._note_signer.verifier())
        except AuditError:
            return cp
        return replace(cp, kid=self.signer.kid) if mine is not None else cp

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
        return self._own(parse_checkpoint(token))

    def checkpoints(self, since: int = 0) -> list[Checkpoint]:
        """All stored checkpoints with size >= since, smallest first."""
        return [parse_checkpoint(t) for _, _, t in self.store.checkpoints(self.log_id, since=since)]


def _default_log_id(store: LogStore, signer: EventSigner | None) -> str:
    if signer is not None:
        return signer.org
    ids = store.log_ids()
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise AuditConfigError("the database holds no audit log")
    raise AuditConfigError(f"database holds {len(ids)} logs; name one ({', '.join(ids[:10])})")


def _size_arg(current: int, size: int | None) -> int:
    if size is None:
        return current
    if not 0 <= size <= current:
        raise AuditRangeError(f"tree size {size} is outside 0..{current}")
    return size


__all__ = ["AuditLog", "Entry"]
