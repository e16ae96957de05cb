"""Read-only, paginated queries over the HDAB store, for screens that list and count.

:class:`permits.hdab.HdabService` owns every write; these functions only read, so a
web page with 10,000 applications and permits in the database costs one indexed,
limited query per list instead of loading every row (the register endpoint of the
API does that; it is fine for a data holder, not for a page a person waits on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, Index, func
from sqlmodel import Session, col, select

from permits.hdab import ApplicationRow, PermitRow, StatusListRow

STATES = ("pending", "approved", "refused", "issued")


@dataclass(frozen=True)
class ApplicationSummary:
    id: str
    applicant: str
    sector: str
    purposes: tuple[str, ...]
    status: str
    created_at: int
    decided_at: int | None
    reason: str | None
    jti: str | None
    application_hash: str
    body: dict[str, Any]


@dataclass(frozen=True)
class PermitSummary:
    jti: str
    version: int
    status: str
    holder: str
    purposes: tuple[str, ...]
    data_holders: tuple[str, ...]
    iat: int
    nbf: int
    exp: int
    signatures: int
    permit_hash: str
    reason: str | None
    revoked_at: int | None
    application_id: str
    token: str


def _app(row: ApplicationRow) -> ApplicationSummary:
    return ApplicationSummary(
        row.id,
        row.applicant,
        row.sector,
        tuple(row.purposes.split(":")),
        row.status,
        row.created_at,
        row.decided_at,
        row.reason,
        row.jti,
        row.application_hash,
        orjson.loads(row.body),
    )


def _permit(row: PermitRow) -> PermitSummary:
    return PermitSummary(
        row.jti,
        row.version,
        row.status,
        row.holder,
        tuple(row.purposes.split(":")),
        tuple(orjson.loads(row.data_holders)),
        row.iat,
        row.nbf,
        row.exp,
        row.signatures,
        row.permit_hash,
        row.reason,
        row.revoked_at,
        row.application_id,
        row.token,
    )


# Covering indexes for the listing orders: a page is then read from the index, and only
# its 50 rows are fetched (created on existing databases too, if missing).
_INDEXES = (
    Index("ix_hdabq_app_created", col(ApplicationRow.created_at), col(ApplicationRow.id)),
    Index(
        "ix_hdabq_app_status_created",
        col(ApplicationRow.status),
        col(ApplicationRow.created_at),
        col(ApplicationRow.id),
    ),
    Index(
        "ix_hdabq_permit_iat",
        col(PermitRow.iat),
        col(PermitRow.jti),
        col(PermitRow.version),
        col(PermitRow.status),
    ),
    Index("ix_hdabq_permit_status_exp", col(PermitRow.status), col(PermitRow.exp)),
)


def ensure_indexes(engine: Engine) -> None:
    """Create the listing indexes if they are missing (idempotent)."""
    for index in _INDEXES:
        index.create(engine, checkfirst=True)


def application_counts(engine: Engine) -> dict[str, int]:
    """Applications by state (every state present, zero when none)."""
    with Session(engine) as session:
        rows = session.exec(
            select(ApplicationRow.status, func.count()).group_by(ApplicationRow.status)
        ).all()
    counts = dict.fromkeys(STATES, 0)
    counts.update({str(status): int(n) for status, n in rows})
    return counts


def list_applications(
    engine: Engine, *, status: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[ApplicationSummary], int]:
    """One page of applications, newest first, and the total matching."""
    with Session(engine) as session:
        query = select(ApplicationRow.id)
        count = select(func.count()).select_from(ApplicationRow)
        if status is not None:
            query = query.where(ApplicationRow.status == status)
            count = count.where(ApplicationRow.status == status)
        total = int(session.exec(count).one())
        ids = session.exec(
            query.order_by(col(ApplicationRow.created_at).desc(), col(ApplicationRow.id).desc())
            .offset(offset)
            .limit(limit)
        ).all()
        rows = {
            r.id: r
            for r in session.exec(
                select(ApplicationRow).where(col(ApplicationRow.id).in_(list(ids)))
            ).all()
        }
        return [_app(rows[i]) for i in ids if i in rows], total


def get_application(engine: Engine, application_id: str) -> ApplicationSummary | None:
    with Session(engine) as session:
        row = session.get(ApplicationRow, application_id)
        return _app(row) if row is not None else None


def permit_versions(engine: Engine, jti: str) -> list[PermitSummary]:
    """Every version of one permit, newest first (empty when unknown)."""
    with Session(engine) as session:
        rows = session.exec(
            select(PermitRow).where(PermitRow.jti == jti).order_by(col(PermitRow.version).desc())
        ).all()
        return [_permit(r) for r in rows]


def list_permits(
    engine: Engine, *, current_only: bool = True, offset: int = 0, limit: int = 50
) -> tuple[list[PermitSummary], int]:
    """One page of permits, newest first; ``current_only`` hides superseded versions."""
    with Session(engine) as session:
        query = select(PermitRow.jti, PermitRow.version)
        count = select(func.count()).select_from(PermitRow)
        if current_only:
            query = query.where(PermitRow.status != "superseded")
            count = count.where(PermitRow.status != "superseded")
        total = int(session.exec(count).one())
        keys = [
            (str(jti), int(version))
            for jti, version in session.exec(
                query.order_by(
                    col(PermitRow.iat).desc(),
                    col(PermitRow.jti).desc(),
                    col(PermitRow.version).desc(),
                )
                .offset(offset)
                .limit(limit)
            ).all()
        ]
        rows = {
            (r.jti, r.version): r
            for r in session.exec(
                select(PermitRow).where(col(PermitRow.jti).in_([k[0] for k in keys]))
            ).all()
        }
        return [_permit(rows[k]) for k in keys if k in rows], total


def expiring_permits(
    engine: Engine, *, now: int, within: int, limit: int = 50
) -> list[PermitSummary]:
    """Valid permits whose validity ends within ``within`` seconds from ``now``, soonest first."""
    with Session(engine) as session:
        rows = session.exec(
            select(PermitRow)
            .where(PermitRow.status == "valid", PermitRow.exp >= now, PermitRow.exp <= now + within)
            .order_by(col(PermitRow.exp))
            .limit(limit)
        ).all()
        return [_permit(r) for r in rows]


def latest_status_list(engine: Engine) -> tuple[int, int, int] | None:
    """(version, iat, revoked_count) of the newest signed status list, or ``None``."""
    with Session(engine) as session:
        row = session.exec(
            select(StatusListRow).order_by(col(StatusListRow.version).desc()).limit(1)
        ).first()
        return (row.version, row.iat, row.revoked_count) if row is not None else None


__all__ = [
    "STATES",
    "ApplicationSummary",
    "PermitSummary",
    "application_counts",
    "ensure_indexes",
    "expiring_permits",
    "get_application",
    "latest_status_list",
    "list_applications",
    "list_permits",
    "permit_versions",
]
