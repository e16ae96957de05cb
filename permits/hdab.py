"""The HDAB domain service: apply -> approve/refuse -> issue -> amend -> revoke.

HTTP lives in ``gateway``; this is the logic and its persistence (SQLModel on
SQLite or PostgreSQL, chosen by URL). Every step is written to the audit sink
*inside* the database transaction, before commit: if the audit write fails the
step is rolled back, so nothing the HDAB decided is ever missing from the log.

The public register (Art. 57(1)) lists permits and refusals with identifiers,
purposes, data holders, dates and reason codes; it never lists authorised persons.
Each issue, amendment and revocation publishes a new, signed status list with a
strictly higher version (see :mod:`permits.statuslist`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jwcrypto import jwk
from pydantic import ValidationError
from sqlalchemy import Engine, func
from sqlalchemy.orm import registry
from sqlalchemy.pool import StaticPool
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

import trust
from permits.audit import AuditSink
from permits.errors import HdabNotFoundError, HdabPolicyError, HdabStateError, PermitModelError
from permits.model import Fees, Issuer, Permit, PermitApplication, PermitBody, parse_permit
from permits.purposes import purpose_violations
from permits.signing import PERMIT_TYP, sign_permit
from permits.statuslist import StatusEntry, StatusList, sign_status_list
from permits.tokens import reasons
from trust import KeyUse, canonical_json, parse_jws, sha256_tag, thumbprint

_REASON = re.compile(r"^[a-z0-9_.:-]{1,64}$")
DAY = 86400


class HdabBase(SQLModel, registry=registry()):
    """Own metadata, so the HDAB tables never mix with other packages' tables."""


class ApplicationRow(HdabBase, table=True):
    __tablename__ = "permit_application"
    id: str = Field(primary_key=True, max_length=64)
    applicant: str = Field(index=True, max_length=128)
    sector: str = Field(max_length=16)
    purposes: str = Field(max_length=128)
    body: str
    application_hash: str = Field(max_length=80)
    status: str = Field(max_length=16, index=True)  # pending | approved | refused | issued
    reason: str | None = Field(default=None, max_length=64)
    created_at: int
    decided_at: int | None = None
    jti: str | None = Field(default=None, max_length=128)


class PermitRow(HdabBase, table=True):
    __tablename__ = "permit_permit"
    jti: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    application_id: str = Field(max_length=64)
    permit_hash: str = Field(max_length=80)
    token: str
    status: str = Field(max_length=16, index=True)  # valid | superseded | revoked
    holder: str = Field(max_length=128)
    purposes: str = Field(max_length=128)
    data_holders: str
    iat: int
    nbf: int
    exp: int
    signatures: int
    reason: str | None = Field(default=None, max_length=64)
    revoked_at: int | None = None


class StatusListRow(HdabBase, table=True):
    __tablename__ = "permit_status_list"
    version: int = Field(primary_key=True)
    iat: int
    revoked_count: int
    token: str


@dataclass(frozen=True)
class ApplicationRecord:
    id: str
    status: str
    application_hash: str
    reason: str | None = None
    jti: str | None = None


@dataclass(frozen=True)
class IssuedPermit:
    jti: str
    version: int
    token: str
    permit_hash: str
    status_list_version: int


def make_engine(url: str) -> Engine:
    """An engine for ``url``; in-memory SQLite shares one connection so data survives."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> None:
    HdabBase.metadata.create_all(engine)


class HdabService:
    def __init__(
        self,
        db: str | Engine,
        *,
        hdab_id: str,
        country: str,
        key: jwk.JWK,
        sink: AuditSink,
        clock: Callable[[], float] = time.time,
        status_key: jwk.JWK | None = None,
    ) -> None:
        """``status_key`` signs status lists (default: ``key``).

        A separate status key is what makes a stolen permit key useless even with a
        backdated ``iat``: data holders require each permit's hash in the status list.
        """
        self.engine = make_engine(db) if isinstance(db, str) else db
        init_db(self.engine)
        self.issuer = Issuer(id=hdab_id, country=country)
        self.key = key
        self.status_key = status_key
        self.sink = sink
        self.clock = clock

    @classmethod
    def read_only(cls, db: str | Engine) -> HdabService:
        """For reading the register, permits and status lists; every write step fails."""
        return cls(db, hdab_id="read-only", country="XX", key=None, sink=_ReadOnlySink())

    def _now(self) -> int:
        return int(self.clock())

    def rotate_key(self, key: jwk.JWK) -> None:
        """Sign from now on with ``key``; publish it in trust lists before rotating."""
        self.key = key

    # -- application and decision ------------------------------------------------------------
    def apply(self, application: PermitApplication | Mapping[str, Any]) -> ApplicationRecord:
        app = _as_application(application)
        body = canonical_json(app.model_dump(mode="json", exclude_none=True))
        app_hash = sha256_tag(body)
        row = ApplicationRow(
            id="app-" + uuid.uuid4().hex[:20],
            applicant=app.holder_of_permit.id,
            sector=app.holder_of_permit.sector,
            purposes=_purpose_code(app),
            body=body.decode(),
            application_hash=app_hash,
            status="pending",
            created_at=self._now(),
        )
        with Session(self.engine) as session:
            session.add(row)
            self.sink.record(
                "permit.applied",
                subject={"application": row.id},
                details={"application_hash": app_hash, "purpose": row.purposes},
            )
            session.commit()
            return _record(row)

    def approve(self, application_id: str) -> ApplicationRecord:
        """Approve unless the Regulation forbids it; a forbidden application is refused instead."""
        with Session(self.engine) as session:
            row = self._pending(session, application_id)
            app = PermitApplication.model_validate_json(row.body)
            violations = _violations(app)
            if violations:
                return self._decide(session, row, "refused", violations[0])
            return self._decide(session, row, "approved", "approved")

    def refuse(self, application_id: str, reason: str) -> ApplicationRecord:
        if not _REASON.match(reason):
            raise HdabStateError("reason must be a code like 'insufficient_justification'")
        with Session(self.engine) as session:
            return self._decide(session, self._pending(session, application_id), "refused", reason)

    def _pending(self, session: Session, application_id: str) -> ApplicationRow:
        row = session.get(ApplicationRow, application_id)
        if row is None:
            raise HdabNotFoundError(f"application {application_id} not found")
        if row.status != "pending":
            raise HdabStateError(f"application {application_id} is {row.status}, not pending")
        return row

    def _decide(
        self, session: Session, row: ApplicationRow, status: str, reason: str
    ) -> ApplicationRecord:
        row.status = status
        row.reason = reason
        row.decided_at = self._now()
        session.add(row)
        self.sink.record(
            "permit.approved" if status == "approved" else "permit.refused",
            subject={"application": row.id},
            details={"reason": reason, "application_hash": row.application_hash},
        )
        session.commit()
        return _record(row)

    # -- issue, amend, revoke ------------------------------------------------------------------
    def issue(
        self,
        application_id: str,
        *,
        co_signers: Sequence[jwk.JWK] = (),
        nbf: int | None = None,
        fees: Fees | None = None,
        conditions: Sequence[str] = (),
    ) -> IssuedPermit:
        """Sign the permit for an approved application (lead first, then each co-issuer)."""
        with Session(self.engine) as session:
            row, app = self._approved(session, application_id)
            self._check_cross_border(app.cross_border is not None, app, co_signers)
            permit = self._build(app, nbf=nbf, fees=fees, conditions=conditions)
            token = sign_permit(permit, [self.key, *co_signers])
            return self._store_issued(session, row, permit, token, 1 + len(co_signers))

    def draft(
        self, application_id: str, *, nbf: int | None = None, conditions: Sequence[str] = ()
    ) -> Permit:
        """The permit an approved application would become: built, checked, not signed or stored.

        A cross-border permit is signed by the lead first and then by each co-issuing HDAB in
        its own system; the caller keeps the lead-signed draft until every co-signature is in
        and then calls :meth:`issue_signed`.
        """
        with Session(self.engine) as session:
            _row, app = self._approved(session, application_id)
            return self._build(app, nbf=nbf, fees=None, conditions=conditions)

    def issue_signed(self, application_id: str, token: str) -> IssuedPermit:
        """Issue a permit whose signatures were gathered elsewhere (lead first, then co-issuers).

        The caller has verified each co-signature against the co-issuers' keys; this checks
        that the payload is this application's permit and that the lead signature is ours.
        """
        parsed = parse_jws(token)
        permit = parse_permit(parsed.payload)
        with Session(self.engine) as session:
            row, app = self._approved(session, application_id)
            body = set(PermitBody.model_fields)
            if permit.iss != self.issuer or permit.model_dump(include=body) != app.model_dump(
                include=body
            ):
                raise HdabStateError(f"the signed permit is not the one {row.id} applied for")
            wanted = 1 + (len(app.cross_border.co_issuers) if app.cross_border else 0)
            kids = [s.header.get("kid") for s in parsed.signatures]
            if len(kids) != wanted or len(set(kids)) != wanted:
                raise HdabStateError(f"{wanted} signatures from distinct keys are required")
            lead = parsed.signatures[0]
            ours = _public_permit_key(self.key)
            if kids[0] != ours.kid:
                raise HdabStateError("the first signature must be this HDAB's")
            with reasons():
                trust.check_header(lead.header, PERMIT_TYP)
                trust.verify_signature(parsed, lead, ours, use=KeyUse.PERMIT)
            return self._store_issued(session, row, permit, token, wanted)

    def _approved(self, session: Session, application_id: str) -> tuple[ApplicationRow, Any]:
        row = session.get(ApplicationRow, application_id)
        if row is None:
            raise HdabNotFoundError(f"application {application_id} not found")
        if row.status != "approved":
            raise HdabStateError(f"application {application_id} is {row.status}, not approved")
        app = PermitApplication.model_validate_json(row.body)
        violations = _violations(app)
        if violations:  # re-checked at issue time: an approval cannot launder an Art. 54 use
            row.status, row.reason, row.decided_at = "refused", violations[0], self._now()
            session.add(row)
            self.sink.record(
                "permit.refused",
                subject={"application": row.id},
                details={"reason": violations[0], "application_hash": row.application_hash},
            )
            session.commit()
            raise HdabPolicyError(violations[0], f"application {row.id} refused: {violations[0]}")
        return row, app

    def _build(
        self,
        app: PermitApplication,
        *,
        nbf: int | None,
        fees: Fees | None,
        conditions: Sequence[str],
    ) -> Permit:
        now = self._now()
        start = now if nbf is None else nbf
        fields = app.model_dump(mode="json", exclude_none=True, exclude={"duration_days"})
        return _build_permit(
            {
                **fields,
                "jti": "permit-" + uuid.uuid4().hex[:24],
                "iss": self.issuer.model_dump(),
                "iat": now,
                "nbf": start,
                "exp": start + app.duration_days * DAY,
                "version": 1,
                "fees": fees.model_dump() if fees else None,
                "conditions": list(conditions),
            }
        )

    def _store_issued(
        self, session: Session, row: ApplicationRow, permit: Permit, token: str, signatures: int
    ) -> IssuedPermit:
        prow = _permit_row(permit, token, row.id, signatures)
        session.add(prow)
        row.status, row.jti = "issued", permit.jti
        session.add(row)
        session.flush()
        self.sink.record(
            "permit.issued",
            subject={"permit": permit.jti, "application": row.id},
            details={"permit_hash": prow.permit_hash, "version": 1, "signatures": signatures},
        )
        status_version = self._publish(session)
        session.commit()
        return IssuedPermit(permit.jti, 1, token, prow.permit_hash, status_version)

    def amend(
        self,
        jti: str,
        changes: Mapping[str, Any],
        *,
        co_signers: Sequence[jwk.JWK] = (),
    ) -> IssuedPermit:
        """Issue version n+1 with ``changes`` (top-level fields); version n becomes superseded."""
        forbidden = {"jti", "iss", "iat", "version", "supersedes", "profile"} & set(changes)
        if forbidden:
            raise HdabStateError(f"cannot amend {sorted(forbidden)}")
        with Session(self.engine) as session:
            current = self._current(session, jti)
            old = Permit.model_validate_json(orjson.dumps(_payload_of(current.token)))
            merged = {**old.model_dump(mode="json", exclude_none=True), **changes}
            merged.update(
                iat=self._now(), version=current.version + 1, supersedes=current.permit_hash
            )
            permit = _build_permit(merged)
            app = PermitApplication.model_validate(
                {
                    **permit.model_dump(
                        include=set(PermitApplication.model_fields) - {"duration_days"}
                    ),
                    "duration_days": 1,
                }
            )
            violations = _violations(app)
            if violations:
                raise HdabPolicyError(violations[0], f"amendment of {jti} refused: {violations[0]}")
            self._check_cross_border(permit.cross_border is not None, app, co_signers)
            token = sign_permit(permit, [self.key, *co_signers])
            current.status = "superseded"
            session.add(current)
            prow = _permit_row(permit, token, current.application_id, 1 + len(co_signers))
            session.add(prow)
            session.flush()
            self.sink.record(
                "permit.amended",
                subject={"permit": jti},
                details={
                    "permit_hash": prow.permit_hash,
                    "version": permit.version,
                    "signatures": prow.signatures,
                    "supersedes": current.permit_hash,
                },
            )
            status_version = self._publish(session)
            session.commit()
            return IssuedPermit(jti, permit.version, token, prow.permit_hash, status_version)

    def revoke(self, jti: str, reason: str) -> int:
        """Revoke (Art. 63); returns the version of the status list that carries it."""
        if not _REASON.match(reason):
            raise HdabStateError("reason must be a code like 'breach_of_conditions'")
        with Session(self.engine) as session:
            current = self._current(session, jti)
            current.status, current.reason, current.revoked_at = "revoked", reason, self._now()
            session.add(current)
            session.flush()
            next_version = self._next_status_version(session)
            self.sink.record(
                "permit.revoked",
                subject={"permit": jti},
                details={"reason": reason, "status_list_version": next_version},
            )
            status_version = self._publish(session)
            session.commit()
            return status_version

    def record_cosigned(self, token: str) -> int:
        """Record a cross-border permit this HDAB co-signed, so it can revoke it too.

        Every HDAB that signed a permit may revoke it (Art. 63 applies to each
        issuer): the co-issuer lists the permit in its own status list, where a
        revocation reaches every data holder's guard. The token must carry a valid
        signature by this HDAB's current key and name it as a co-issuer. Returns the
        version of the status list now listing it.
        """
        from permits.cosigned import check_cosigned

        permit = check_cosigned(token, self.key, self.issuer.id)
        with Session(self.engine) as session:
            rows = session.exec(select(PermitRow).where(PermitRow.jti == permit.jti)).all()
            if any(r.version >= permit.version for r in rows):
                raise HdabStateError(f"permit {permit.jti} version {permit.version} already held")
            for older in rows:
                if older.status == "valid":
                    older.status = "superseded"
                    session.add(older)
            prow = _permit_row(permit, token, "cosigned", len(parse_jws(token).signatures))
            session.add(prow)
            session.flush()
            self.sink.record(
                "permit.issued",
                subject={"permit": permit.jti},
                details={
                    "permit_hash": prow.permit_hash,
                    "version": permit.version,
                    "signatures": prow.signatures,
                },
            )
            version = self._publish(session)
            session.commit()
            return version

    def publish_status_list(self) -> int:
        """Re-publish (e.g. on a timer) so data holders always hold a fresh list."""
        with Session(self.engine) as session:
            version = self._publish(session)
            session.commit()
            return version

    def _check_cross_border(
        self, cross: bool, app: PermitApplication, co_signers: Sequence[jwk.JWK]
    ) -> None:
        if cross:
            assert app.cross_border is not None
            if app.cross_border.lead != self.issuer.id:
                raise HdabStateError("only the lead HDAB issues a cross-border permit")
            if len(co_signers) != len(app.cross_border.co_issuers):
                raise HdabStateError("one co-signature per co-issuing HDAB is required")
        elif co_signers:
            raise HdabStateError("co-signatures given for a national permit")
        kids = {thumbprint(k) for k in [self.key, *co_signers]}
        if len(kids) != 1 + len(co_signers):
            raise HdabStateError("each signature must come from a different key")

    def _current(self, session: Session, jti: str) -> PermitRow:
        rows = session.exec(select(PermitRow).where(PermitRow.jti == jti)).all()
        if not rows:
            raise HdabNotFoundError(f"permit {jti} not found")
        latest = max(rows, key=lambda r: r.version)
        if latest.status != "valid":
            raise HdabStateError(f"permit {jti} is {latest.status}")
        return latest

    def _next_status_version(self, session: Session) -> int:
        current = session.exec(select(func.max(StatusListRow.version))).one()
        return int(current or 0) + 1

    def _publish(self, session: Session) -> int:
        version = self._next_status_version(session)
        latest: dict[str, PermitRow] = {}
        for prow in session.exec(select(PermitRow)).all():
            if prow.jti not in latest or prow.version > latest[prow.jti].version:
                latest[prow.jti] = prow
        entries = {
            jti: StatusEntry(
                status="revoked" if r.status == "revoked" else "valid",
                version=r.version,
                hash=r.permit_hash,
                reason=r.reason if r.status == "revoked" else None,
            )
            for jti, r in latest.items()
        }
        status = StatusList(iss=self.issuer.id, version=version, iat=self._now(), entries=entries)
        token = sign_status_list(
            status, self.status_key if self.status_key is not None else self.key
        )
        session.add(
            StatusListRow(
                version=version, iat=status.iat, revoked_count=status.revoked_count(), token=token
            )
        )
        self.sink.record(
            "statuslist.published",
            subject={},
            details={"status_list_version": version, "revoked_count": status.revoked_count()},
        )
        return version

    # -- reading ------------------------------------------------------------------------------
    def status_list(self) -> str | None:
        with Session(self.engine) as session:
            row = session.exec(
                select(StatusListRow).order_by(col(StatusListRow.version).desc())
            ).first()
            return row.token if row else None

    def permit_token(self, jti: str, version: int | None = None) -> str:
        with Session(self.engine) as session:
            rows = session.exec(select(PermitRow).where(PermitRow.jti == jti)).all()
            if version is not None:
                rows = [r for r in rows if r.version == version]
            if not rows:
                raise HdabNotFoundError(f"permit {jti} not found")
            return max(rows, key=lambda r: r.version).token

    def application(self, application_id: str) -> ApplicationRecord:
        with Session(self.engine) as session:
            row = session.get(ApplicationRow, application_id)
            if row is None:
                raise HdabNotFoundError(f"application {application_id} not found")
            return _record(row)

    def register(self) -> dict[str, list[dict[str, Any]]]:
        """The public register (Art. 57(1)): permits and refusals, no personal data."""
        with Session(self.engine) as session:
            permits = [
                {
                    "jti": r.jti,
                    "version": r.version,
                    "status": r.status,
                    "holder_of_permit": r.holder,
                    "purposes": r.purposes.split(":"),
                    "data_holders": orjson.loads(r.data_holders),
                    "iat": r.iat,
                    "nbf": r.nbf,
                    "exp": r.exp,
                    "permit_hash": r.permit_hash,
                    "reason": r.reason,
                }
                for r in session.exec(
                    select(PermitRow).order_by(col(PermitRow.iat), col(PermitRow.version))
                ).all()
            ]
            refusals = [
                {
                    "application": r.id,
                    "applicant": r.applicant,
                    "purposes": r.purposes.split(":"),
                    "reason": r.reason,
                    "decided_at": r.decided_at,
                }
                for r in session.exec(
                    select(ApplicationRow).where(ApplicationRow.status == "refused")
                ).all()
            ]
        return {"permits": permits, "refusals": refusals}


# ---------------------------------------------------------------------------- helpers
def _public_permit_key(key: Any) -> trust.PublicKey:
    if isinstance(key, trust.SigningKey):
        return key.public
    return trust.PublicKey.from_jwk(key, uses={KeyUse.PERMIT})


class _ReadOnlySink:
    def record(
        self, type: str, *, subject: Mapping[str, str], details: Mapping[str, object]
    ) -> None:
        raise HdabStateError("this HDAB service was opened read-only")


def _as_application(application: PermitApplication | Mapping[str, Any]) -> PermitApplication:
    if isinstance(application, PermitApplication):
        return application
    try:
        return PermitApplication.model_validate(dict(application))
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PermitModelError(
            f"application invalid at {loc or '<root>'}: {first['msg']}"
        ) from None


def _build_permit(fields: Mapping[str, Any]) -> Permit:
    try:
        return Permit.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PermitModelError(f"permit invalid at {loc or '<root>'}: {first['msg']}") from None


def _violations(app: PermitApplication) -> list[str]:
    reasons = purpose_violations(
        app.purpose.codes,
        app.purpose.declared_uses,
        public_sector=app.holder_of_permit.sector == "public",
    )
    # Art. 71(4): the opt-out exception is for public sector bodies only in this profile
    if not app.opt_out.applied and app.holder_of_permit.sector != "public":
        reasons.append("opt_out_exception_not_allowed")
    return reasons


def _purpose_code(app: PermitApplication | Permit) -> str:
    return ":".join(sorted(c.value for c in app.purpose.codes))


def _payload_of(token: str) -> Any:
    return orjson.loads(parse_jws(token).payload)


def _permit_row(permit: Permit, token: str, application_id: str, signatures: int) -> PermitRow:
    return PermitRow(
        jti=permit.jti,
        version=permit.version,
        application_id=application_id,
        permit_hash=permit.permit_hash(),
        token=token,
        status="valid",
        holder=permit.holder_of_permit.id,
        purposes=_purpose_code(permit),
        data_holders=orjson.dumps([g.holder for g in permit.data]).decode(),
        iat=permit.iat,
        nbf=permit.nbf,
        exp=permit.exp,
        signatures=signatures,
    )


def _record(row: ApplicationRow) -> ApplicationRecord:
    return ApplicationRecord(row.id, row.status, row.application_hash, row.reason, row.jti)


__all__ = [
    "ApplicationRecord",
    "HdabService",
    "IssuedPermit",
    "init_db",
    "make_engine",
]
