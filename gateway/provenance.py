"""Model provenance a third party can check, from the organisations' own signed logs.

A released model comes with a model card that *claims* a permit, a feature
spec, the sites of each round and a model hash. None of that is evidence. The
evidence is in three kinds of logs kept by different organisations: the HDAB's
(``permit.issued``), the coordinator's (``training.started``, one
``training.round`` per round, ``model.released``) and each site's
(``data.extracted``, ``training.round``). :func:`check_provenance` accepts the
card only if every claim is an entry of the right organisation's log, the log
verifies end to end, and the entry is proven by an RFC 9162 inclusion proof
against the log's newest signed checkpoint. Entries beyond that checkpoint
are never counted as evidence.

The model file is hashed here, the way the coordinator hashed it before
logging ``model.released``: a model swapped after release, or a card edited
to match a swapped model, fails.

Only ``audit_chain``'s public functions are used (``verify_log``,
``verify_checkpoint``, ``verify_event``, inclusion and consistency proofs),
never the checkpoint byte layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from audit_chain import (
    AuditError,
    AuditLog,
    Checkpoint,
    Event,
    TrustStore,
    verify_checkpoint,
    verify_consistency,
    verify_event,
    verify_inclusion,
    verify_log,
)
from audit_chain.events import parse_event
from federation.release import CARD_FORMAT, released_model_hash
from gateway.errors import GatewayError
from trust import is_hash


class ProvenanceError(GatewayError):
    """A claim of the model card that the logs do not prove; ``code`` names which."""

    code = "MODEL_PROVENANCE"
    status = 422
    title = "Model provenance not proven"


@dataclass(frozen=True)
class LogRef:
    """Where one organisation's log is, and which organisation must have signed it."""

    org: str
    url: str
    log_id: str | None = None


@dataclass(frozen=True)
class ProvenEntry:
    """A log entry proven included under the log's newest signed checkpoint."""

    org: str
    log_id: str
    index: int
    type: str
    checkpoint_size: int
    checkpoint_root: str
    proof_hashes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoundEvidence:
    round: int
    model_hash: str
    coordinator: ProvenEntry
    sites: dict[str, ProvenEntry]

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "model_hash": self.model_hash,
            "coordinator": self.coordinator.to_json(),
            "sites": {s: e.to_json() for s, e in self.sites.items()},
        }


@dataclass(frozen=True)
class ProvenanceReport:
    model_hash: str
    permit: str
    permit_hash: str
    spec_hash: str
    job: str
    permit_issued: ProvenEntry
    training_started: ProvenEntry
    released: ProvenEntry
    rounds: list[RoundEvidence]
    sites_extracted: dict[str, ProvenEntry]
    card_checkpoint: dict[str, Any] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "model_hash": self.model_hash,
            "permit": self.permit,
            "permit_hash": self.permit_hash,
            "spec_hash": self.spec_hash,
            "job": self.job,
            "permit_issued": self.permit_issued.to_json(),
            "training_started": self.training_started.to_json(),
            "released": self.released.to_json(),
            "rounds": [r.to_json() for r in self.rounds],
            "sites_extracted": {s: e.to_json() for s, e in self.sites_extracted.items()},
            "card_checkpoint": self.card_checkpoint,
        }


# --------------------------------------------------------------------------- one log


def _root_text(cp: Checkpoint) -> str:
    return "sha256:" + cp.root.hex()


def _root_bytes(text: str) -> bytes:
    if not is_hash(text):
        raise AuditError("root must be sha256:<64 lowercase hex>")
    return bytes.fromhex(text[7:])


class LogEvidence:
    """One organisation's log: verified end to end, events readable up to its checkpoint."""

    def __init__(self, ref: LogRef, log: AuditLog, trust: TrustStore) -> None:
        self.ref = ref
        self.log = log
        report = verify_log(log, trust, log_org=ref.org)
        if not report.ok:
            where = "" if report.index is None else f" at index {report.index}"
            raise ProvenanceError(
                f"{ref.org}'s log does not verify: [{report.reason}]{where}",
                code="MODEL_LOG_INVALID",
            )
        cp = log.latest_checkpoint()
        if cp is None:
            raise ProvenanceError(f"{ref.org}'s log has no checkpoint", code="MODEL_LOG_INVALID")
        try:
            verify_checkpoint(cp.token, trust, origin=log.log_id, log_org=ref.org)
        except AuditError as exc:
            raise ProvenanceError(
                f"{ref.org}'s checkpoint does not verify: [{exc.code}]", code="MODEL_LOG_INVALID"
            ) from None
        self.checkpoint = cp
        self.events: list[tuple[int, Event]] = [
            (entry.index, verify_event(entry.token, trust).event)
            for entry in log.entries(0, cp.size)
        ]
        self._by_index = dict(self.events)
        self.uncovered = log.size() - cp.size

    def find(self, type: str, **subject: str) -> list[tuple[int, Event]]:
        """Events of ``type`` signed by the log's organisation whose subject has ``subject``."""
        return [
            (i, e)
            for i, e in self.events
            if e.type == type
            and e.org == self.ref.org
            and all(e.subject.get(k) == v for k, v in subject.items())
        ]

    def prove(self, index: int) -> ProvenEntry:
        """Inclusion proof of entry ``index`` against the verified checkpoint root."""
        cp = self.checkpoint
        proof = self.log.inclusion_proof(index, cp.size)
        try:
            verify_inclusion(self.log.entry(index).leaf_hash, index, cp.size, proof, cp.root)
        except AuditError:
            raise ProvenanceError(
                f"inclusion proof of {self.ref.org}'s entry {index} fails", code="MODEL_LOG_INVALID"
            ) from None
        event = self._by_index[index]
        return ProvenEntry(
            self.ref.org, self.log.log_id, index, event.type, cp.size, _root_text(cp), len(proof)
        )

    def check_extends(self, size: int, root: str) -> None:
        """The state a card cites (``size``, ``root``) is a prefix of the verified log."""
        cp = self.checkpoint
        if size > cp.size:
            raise ProvenanceError(
                f"card cites size {size}, beyond {self.ref.org}'s checkpoint ({cp.size})",
                code="MODEL_CHECKPOINT_MISMATCH",
            )
        try:
            proof = self.log.consistency_proof(size, cp.size) if 0 < size < cp.size else []
            if size == cp.size and _root_bytes(root) != cp.root:
                raise AuditError("roots differ at the same size")
            if 0 < size < cp.size:
                verify_consistency(size, cp.size, proof, _root_bytes(root), cp.root)
        except AuditError:
            raise ProvenanceError(
                f"card's checkpoint (size {size}) is not a prefix of {self.ref.org}'s log",
                code="MODEL_CHECKPOINT_MISMATCH",
            ) from None

    def one(self, code: str, what: str, type: str, **subject: str) -> tuple[int, Event]:
        """The last proven-checkpoint event of ``type`` with ``subject``, else ``code``."""
        found = self.find(type, **subject)
        if not found:
            hint = (
                " (only beyond its newest checkpoint: not evidence)"
                if self._beyond(type, subject)
                else ""
            )
            raise ProvenanceError(f"{self.ref.org}'s log has no {what}{hint}", code=code)
        return found[-1]

    def _beyond(self, type: str, subject: Mapping[str, str]) -> bool:
        """Whether a matching event sits after the checkpoint (for a clearer message only)."""
        for entry in self.log.entries(self.checkpoint.size, None):
            try:
                event = parse_event(entry.token)
            except AuditError:
                continue
            if event.type == type and all(event.subject.get(k) == v for k, v in subject.items()):
                return True
        return False


def _database_exists(url: str) -> bool:
    """A SQLite file must exist (opening one would create an empty log and say "OK")."""
    if "://" not in url:
        return Path(url).exists()
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        return path not in ("", ":memory:") and Path(path).exists()
    return True


@contextmanager
def open_evidence(ref: LogRef, trust: TrustStore) -> Iterator[LogEvidence]:
    if not _database_exists(ref.url):
        raise ProvenanceError(f"{ref.org}'s log database does not exist", code="MODEL_LOG_MISSING")
    opened = AuditLog.open(ref.url)
    try:
        log_id = ref.log_id
        if log_id is None:
            ids = opened.store.log_ids()
            if len(ids) != 1:
                raise ProvenanceError(
                    f"{ref.org}'s database holds {len(ids)} logs; name one as ORG=DB#LOG",
                    code="MODEL_LOG_MISSING",
                )
            log_id = ids[0]
        yield LogEvidence(ref, AuditLog(opened.store, log_id), trust)
    finally:
        opened.close()


# --------------------------------------------------------------------------- the card


def _card_field(card: Mapping[str, Any], name: str, kind: type) -> Any:
    value = card.get(name)
    if not isinstance(value, kind):
        raise ProvenanceError(
            f"model card field {name!r} missing or malformed", code="MODEL_CARD_INVALID"
        )
    return value


def _card_rounds(card: Mapping[str, Any]) -> list[tuple[int, str, list[str]]]:
    rounds = []
    for item in _card_field(card, "per_round", list):
        if (
            not isinstance(item, Mapping)
            or type(item.get("round")) is not int
            or not isinstance(item.get("model_hash"), str)
            or not isinstance(item.get("sites"), list)
        ):
            raise ProvenanceError("model card per_round entry malformed", code="MODEL_CARD_INVALID")
        rounds.append((item["round"], item["model_hash"], [str(s) for s in item["sites"]]))
    return rounds


def check_provenance(
    card: Mapping[str, Any],
    model_hash: str,
    hdab: LogEvidence,
    coordinator: LogEvidence,
    sites: Mapping[str, LogEvidence],
) -> ProvenanceReport:
    """Every claim of ``card`` against the logs; raise :class:`ProvenanceError` on the first gap."""
    if card.get("format") != CARD_FORMAT:
        raise ProvenanceError(f"not a model card ({CARD_FORMAT})", code="MODEL_CARD_INVALID")
    claimed = _card_field(card, "model_hash", str)
    permit = _card_field(card, "permit", str)
    permit_hash = _card_field(card, "permit_hash", str)
    spec_hash = _card_field(card, "spec_hash", str)
    model_id = _card_field(card, "model", str)
    rounds = _card_rounds(card)
    if model_hash != claimed:
        raise ProvenanceError(
            f"model file hash {model_hash} is not the card's {claimed}", code="MODEL_HASH_MISMATCH"
        )

    # the release: the coordinator logged exactly this model hash for this model id
    r_index, released = coordinator.one(
        "MODEL_NOT_RELEASED", f"model.released for {model_id}", "model.released", model=model_id
    )
    if released.details.get("model_hash") != model_hash:
        raise ProvenanceError(
            f"{coordinator.ref.org} logged model hash {released.details.get('model_hash')} "
            f"at index {r_index}, not {model_hash}",
            code="MODEL_HASH_NOT_LOGGED",
        )
    if released.subject.get("permit") != permit:
        raise ProvenanceError(
            f"the model was released under permit {released.subject.get('permit')!r} "
            f"(coordinator index {r_index}), the card names {permit!r}",
            code="MODEL_PERMIT_MISMATCH",
        )
    job = str(released.subject.get("job", ""))

    # the permit: issued by the HDAB, with the hash the card cites
    issued = [
        (i, e)
        for kind in ("permit.issued", "permit.amended")
        for i, e in hdab.find(kind, permit=permit)
    ]
    if not issued:
        raise ProvenanceError(
            f"{hdab.ref.org}'s log has no permit.issued for {permit!r}",
            code="MODEL_PERMIT_NOT_ISSUED",
        )
    matching = [(i, e) for i, e in issued if e.details.get("permit_hash") == permit_hash]
    if not matching:
        raise ProvenanceError(
            f"{hdab.ref.org} issued {permit!r} with another hash than the card's",
            code="MODEL_PERMIT_MISMATCH",
        )
    issued_entry = hdab.prove(matching[-1][0])

    # the run: started under this permit with this spec
    s_index, started = coordinator.one(
        "MODEL_NOT_RELEASED", f"training.started for job {job}", "training.started", job=job
    )
    if started.subject.get("permit") != permit:
        raise ProvenanceError(
            f"job {job} was started under another permit", code="MODEL_PERMIT_MISMATCH"
        )
    if started.details.get("spec_hash") != spec_hash:
        raise ProvenanceError(
            f"job {job} was started with spec {started.details.get('spec_hash')}, "
            f"the card says {spec_hash}",
            code="MODEL_SPEC_MISMATCH",
        )

    # each round: the coordinator's merged model, and each named site's own entry
    evidence: list[RoundEvidence] = []
    contributors: list[str] = []
    for number, round_hash, round_sites in rounds:
        matches = [
            (i, e)
            for i, e in coordinator.find("training.round", job=job, permit=permit)
            if e.details.get("round") == number
        ]
        if not matches:
            raise ProvenanceError(
                f"{coordinator.ref.org}'s log has no training.round {number} for job {job}",
                code="MODEL_ROUND_MISMATCH",
            )
        c_index, c_event = matches[-1]
        if c_event.details.get("model_hash") != round_hash or c_event.details.get("sites") != len(
            round_sites
        ):
            raise ProvenanceError(
                f"round {number}: the card's model hash or site count differs from "
                f"{coordinator.ref.org}'s index {c_index}",
                code="MODEL_ROUND_MISMATCH",
            )
        site_entries: dict[str, ProvenEntry] = {}
        for site in round_sites:
            log = sites.get(site)
            if log is None:
                raise ProvenanceError(
                    f"no log given for site {site} (round {number})", code="MODEL_SITE_LOG_MISSING"
                )
            rows = [
                (i, e)
                for i, e in log.find("training.round", job=job, permit=permit, site=site)
                if e.details.get("round") == number
            ]
            if not rows:
                raise ProvenanceError(
                    f"{site}'s log has no training.round {number} for job {job} under {permit}",
                    code="MODEL_SITE_NOT_LOGGED",
                )
            site_entries[site] = log.prove(rows[-1][0])
            if site not in contributors:
                contributors.append(site)
        evidence.append(RoundEvidence(number, round_hash, coordinator.prove(c_index), site_entries))
    if sorted(contributors) != sorted(map(str, card.get("sites_contributed") or [])):
        raise ProvenanceError(
            "the card's contributing sites are not the sites of its rounds",
            code="MODEL_CARD_INVALID",
        )

    # each site computed its features from the pinned spec under this permit
    extracted: dict[str, ProvenEntry] = {}
    for site in contributors:
        i, event = sites[site].one(
            "MODEL_SITE_NOT_LOGGED",
            f"data.extracted for job {job}",
            "data.extracted",
            job=job,
            permit=permit,
            site=site,
        )
        if event.details.get("spec_hash") != spec_hash:
            raise ProvenanceError(
                f"{site} extracted features with another spec (index {i})",
                code="MODEL_SPEC_MISMATCH",
            )
        extracted[site] = sites[site].prove(i)

    # the checkpoint the card cites is a prefix of the coordinator's verified log
    cited = card.get("audit_checkpoint")
    if isinstance(cited, Mapping):
        size, root = cited.get("size"), cited.get("root")
        if type(size) is not int or not isinstance(root, str):
            raise ProvenanceError("card's audit_checkpoint malformed", code="MODEL_CARD_INVALID")
        coordinator.check_extends(size, root)

    return ProvenanceReport(
        model_hash=model_hash,
        permit=permit,
        permit_hash=permit_hash,
        spec_hash=spec_hash,
        job=job,
        permit_issued=issued_entry,
        training_started=coordinator.prove(s_index),
        released=coordinator.prove(r_index),
        rounds=evidence,
        sites_extracted=extracted,
        card_checkpoint=dict(cited) if isinstance(cited, Mapping) else None,
    )


def verify_model(
    model: str | Path,
    card: Mapping[str, Any],
    *,
    trust: TrustStore,
    hdab: LogRef,
    coordinator: LogRef,
    sites: Sequence[LogRef],
) -> ProvenanceReport:
    """Open every log, hash the model file, and :func:`check_provenance`."""
    from federation.errors import ModelFormatError

    try:
        model_hash = released_model_hash(model)
    except ModelFormatError as exc:
        raise ProvenanceError(f"model file: {exc}", code="MODEL_FILE_INVALID") from None
    with ExitStack() as stack:
        hdab_ev = stack.enter_context(open_evidence(hdab, trust))
        coord_ev = stack.enter_context(open_evidence(coordinator, trust))
        site_ev = {ref.org: stack.enter_context(open_evidence(ref, trust)) for ref in sites}
        return check_provenance(card, model_hash, hdab_ev, coord_ev, site_ev)


__all__ = [
    "LogEvidence",
    "LogRef",
    "ProvenEntry",
    "ProvenanceError",
    "ProvenanceReport",
    "RoundEvidence",
    "check_provenance",
    "open_evidence",
    "verify_model",
]
