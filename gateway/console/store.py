"""The console's own tables, in the HDAB's database: staff, sessions, decisions, signatures.

Sessions are server-side: the cookie carries a random token, the table only its
SHA-256, so a copy of the database does not let anyone sign in. ``decision`` rows
remember *who* approved, refused, signed or revoked, which the four-eyes rule
needs and the permit tables do not hold. A cross-border permit that the lead has
signed waits in ``pending_signature`` until every co-issuer's signature is in.

All functions are synchronous; the console runs them on the service's database thread.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, delete, select

from gateway.errors import ConflictError, NotFoundError, ValidationError

ROLES = ("reviewer", "signer", "admin")
STAFF_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class ConsoleBase(SQLModel, registry=registry()):
    """Own metadata, so the console's tables never mix with other packages' tables."""


class StaffRow(ConsoleBase, table=True):
    __tablename__ = "console_staff"
    id: str = Field(primary_key=True, max_length=64)
    role: str = Field(max_length=16)
    password_hash: str = Field(max_length=256)
    disabled: bool = False
    failures: int = 0
    locked: bool = False
    created_at: int


class SessionRow(ConsoleBase, table=True):
    __tablename__ = "console_session"
    token_hash: str = Field(primary_key=True, max_length=64)
    staff_id: str = Field(index=True, max_length=64)
    csrf: str = Field(max_length=64)
    created_at: int
    last_seen: int


class DecisionRow(ConsoleBase, table=True):
    __tablename__ = "console_decision"
    id: int | None = Field(default=None, primary_key=True)
    application_id: str = Field(index=True, max_length=64)
    jti: str | None = Field(default=None, index=True, max_length=128)
    action: str = Field(max_length=32)
    staff_id: str = Field(max_length=64)
    at: int
    reason: str | None = Field(default=None, max_length=64)


class PendingRow(ConsoleBase, table=True):
    __tablename__ = "console_pending_signature"
    application_id: str = Field(primary_key=True, max_length=64)
    jti: str = Field(max_length=128)
    token: str
    permit_hash: str = Field(max_length=80)
    created_at: int


class SpecRow(ConsoleBase, table=True):
    __tablename__ = "console_feature_spec"
    hash: str = Field(primary_key=True, max_length=80)
    document: str
    attached_by: str = Field(max_length=64)
    at: int


@dataclass(frozen=True)
class Staff:
    id: str
    role: str
    disabled: bool
    locked: bool
    failures: int

    def may(self, *roles: str) -> bool:
        """Admins may do everything; otherwise the role must be one of ``roles``."""
        return self.role == "admin" or self.role in roles


@dataclass(frozen=True)
class StaffSession:
    staff: Staff
    csrf: str
    token_hash: str


def _staff(row: StaffRow) -> Staff:
    return Staff(row.id, row.role, row.disabled, row.locked, row.failures)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_staff_id(staff_id: str) -> str:
    if not STAFF_ID.fullmatch(staff_id):
        raise ValidationError(
            "a staff id is 2-64 characters: lower-case letters, digits, '.', '_' or '-'",
            code="STAFF_ID_INVALID",
        )
    return staff_id


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", code="STAFF_ROLE_INVALID")
    return role


class ConsoleStore:
    """The console's tables on ``engine`` (created if missing)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ConsoleBase.metadata.create_all(engine)

    # -- staff -----------------------------------------------------------------------------
    def add_staff(self, staff_id: str, role: str, password_hash: str, *, now: int) -> Staff:
        check_staff_id(staff_id)
        check_role(role)
        with Session(self.engine) as s:
            if s.get(StaffRow, staff_id) is not None:
                raise ConflictError(f"staff {staff_id} exists", code="STAFF_EXISTS")
            row = StaffRow(id=staff_id, role=role, password_hash=password_hash, created_at=now)
            s.add(row)
            s.commit()
            return _staff(row)

    def staff(self, staff_id: str) -> Staff | None:
        with Session(self.engine) as s:
            row = s.get(StaffRow, staff_id)
            return _staff(row) if row is not None else None

    def password_hash(self, staff_id: str) -> str | None:
        with Session(self.engine) as s:
            row = s.get(StaffRow, staff_id)
            return row.password_hash if row is not None else None

    def all_staff(self) -> list[Staff]:
        with Session(self.engine) as s:
            return [_staff(r) for r in s.exec(select(StaffRow).order_by(col(StaffRow.id))).all()]

    def _existing(self, s: Session, staff_id: str) -> StaffRow:
        row = s.get(StaffRow, staff_id)
        if row is None:
            raise NotFoundError(f"no staff {staff_id}", code="STAFF_NOT_FOUND")
        return row

    def disable(self, staff_id: str) -> Staff:
        """Disable the account and end its sessions at once."""
        with Session(self.engine) as s:
            row = self._existing(s, staff_id)
            row.disabled = True
            s.add(row)
            s.exec(delete(SessionRow).where(col(SessionRow.staff_id) == staff_id))
            s.commit()
            return _staff(row)

    def reset(self, staff_id: str, password_hash: str, *, role: str | None = None) -> Staff:
        """New password; unlocks, re-enables and ends every session of the account."""
        with Session(self.engine) as s:
            row = self._existing(s, staff_id)
            row.password_hash = password_hash
            row.failures, row.locked, row.disabled = 0, False, False
            if role is not None:
                row.role = check_role(role)
            s.add(row)
            s.exec(delete(SessionRow).where(col(SessionRow.staff_id) == staff_id))
            s.commit()
            return _staff(row)

    def record_failure(self, staff_id: str, *, lock_after: int) -> Staff:
        """Count one wrong password; lock the account at ``lock_after`` consecutive failures."""
        with Session(self.engine) as s:
            row = self._existing(s, staff_id)
            row.failures += 1
            if row.failures >= lock_after:
                row.locked = True
            s.add(row)
            s.commit()
            return _staff(row)

    def record_success(self, staff_id: str) -> None:
        with Session(self.engine) as s:
            row = self._existing(s, staff_id)
            row.failures = 0
            s.add(row)
            s.commit()

    # -- sessions --------------------------------------------------------------------------
    def open_session(self, staff_id: str, *, now: int) -> tuple[str, str]:
        """A new session: (cookie token, CSRF token). Only the token's hash is stored."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        with Session(self.engine) as s:
            s.add(
                SessionRow(
                    token_hash=token_hash(token),
                    staff_id=staff_id,
                    csrf=csrf,
                    created_at=now,
                    last_seen=now,
                )
            )
            s.commit()
        return token, csrf

    def session(
        self, token: str, *, now: int, idle: int
    ) -> tuple[StaffSession | None, str, str | None]:
        """(live session, ``"ok"``, staff id), or (``None``, why, staff id if known).

        An idle or disabled session is deleted here: it can never come back.
        """
        with Session(self.engine) as s:
            row = s.get(SessionRow, token_hash(token))
            if row is None:
                return None, "no_session", None
            staff = s.get(StaffRow, row.staff_id)
            if staff is None or staff.disabled or staff.locked:
                s.delete(row)
                s.commit()
                return None, "account_unavailable", row.staff_id
            if now - row.last_seen > idle:
                s.delete(row)
                s.commit()
                return None, "idle_timeout", row.staff_id
            if now - row.last_seen >= 5:  # fewer writes; the idle limit is in minutes
                row.last_seen = now
                s.add(row)
                s.commit()
            return StaffSession(_staff(staff), row.csrf, row.token_hash), "ok", staff.id

    def close_session(self, token_hash_value: str) -> None:
        with Session(self.engine) as s:
            row = s.get(SessionRow, token_hash_value)
            if row is not None:
                s.delete(row)
                s.commit()

    # -- decisions -------------------------------------------------------------------------
    def add_decision(
        self,
        application_id: str,
        action: str,
        staff_id: str,
        *,
        now: int,
        jti: str | None = None,
        reason: str | None = None,
    ) -> None:
        with Session(self.engine) as s:
            s.add(
                DecisionRow(
                    application_id=application_id,
                    jti=jti,
                    action=action,
                    staff_id=staff_id,
                    at=now,
                    reason=reason,
                )
            )
            s.commit()

    def decisions(
        self, *, application_id: str | None = None, jti: str | None = None
    ) -> list[DecisionRow]:
        with Session(self.engine) as s:
            q = select(DecisionRow)
            if application_id is not None:
                q = q.where(DecisionRow.application_id == application_id)
            if jti is not None:
                q = q.where(DecisionRow.jti == jti)
            return list(s.exec(q.order_by(col(DecisionRow.id))).all())

    def approver(self, application_id: str) -> str | None:
        rows = [d for d in self.decisions(application_id=application_id) if d.action == "approved"]
        return rows[-1].staff_id if rows else None

    # -- cross-border signatures -----------------------------------------------------------
    def pending(self, application_id: str) -> PendingRow | None:
        with Session(self.engine) as s:
            return s.get(PendingRow, application_id)

    def put_pending(
        self, application_id: str, jti: str, token: str, permit_hash: str, *, now: int
    ) -> None:
        with Session(self.engine) as s:
            row = s.get(PendingRow, application_id)
            if row is None:
                row = PendingRow(
                    application_id=application_id,
                    jti=jti,
                    token=token,
                    permit_hash=permit_hash,
                    created_at=now,
                )
            else:
                row.token = token
            s.add(row)
            s.commit()

    def drop_pending(self, application_id: str) -> None:
        with Session(self.engine) as s:
            row = s.get(PendingRow, application_id)
            if row is not None:
                s.delete(row)
                s.commit()

    # -- feature specifications ------------------------------------------------------------
    def spec(self, spec_hash: str) -> str | None:
        with Session(self.engine) as s:
            row = s.get(SpecRow, spec_hash)
            return row.document if row is not None else None

    def put_spec(self, spec_hash: str, document: str, staff_id: str, *, now: int) -> None:
        with Session(self.engine) as s:
            if s.get(SpecRow, spec_hash) is None:
                s.add(SpecRow(hash=spec_hash, document=document, attached_by=staff_id, at=now))
                s.commit()

    def specs(self, hashes: Sequence[str]) -> dict[str, str]:
        with Session(self.engine) as s:
            rows = s.exec(select(SpecRow).where(col(SpecRow.hash).in_(list(hashes)))).all()
            return {r.hash: r.document for r in rows}


__all__ = [
    "ROLES",
    "ConsoleStore",
    "DecisionRow",
    "PendingRow",
    "Staff",
    "StaffSession",
    "check_role",
    "check_staff_id",
    "token_hash",
]
