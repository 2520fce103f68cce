"""Reading the access log: audit rows filtered by person, key, action, result and time, newest first.

Pages are cut by keyset (``id < cursor``), not by offset, so a page costs the same however deep
it is and rows written meanwhile never shift a page: a client follows ``next_cursor`` until it is
None. Rows hold no biometric data (``service.gallery.audit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.gallery.tables import AuditEvent, as_utc


@dataclass(frozen=True)
class AuditFilter:
    """Every field given must hold; ``since`` is inclusive, ``until`` exclusive (UTC-aware times)."""

    person_id: str | None = None
    key_id: int | None = None
    actions: tuple[str, ...] = field(default_factory=tuple)
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for t in (self.since, self.until):
            if t is not None and t.tzinfo is None:
                raise ValueError("audit filter times must carry a time zone")


def _utc(t: datetime) -> datetime:
    # SQLite stores the UTC wall clock without a zone: compare in UTC on every backend
    return t.astimezone(timezone.utc)


def row_dict(r: AuditEvent) -> dict[str, Any]:
    return {
        "id": r.id,
        "at": as_utc(r.at),
        "action": r.action,
        "key_id": r.key_id,
        "key_name": r.key_name,
        "person_id": r.person_id,
        "result": r.result,
        "score": r.score,
        "model_version": r.model_version,
        "detail": r.detail or {},
    }


def page(
    s: Session, flt: AuditFilter, limit: int, cursor: int | None = None
) -> tuple[list[dict], int | None]:
    """Up to ``limit`` rows matching ``flt`` with ``id < cursor`` (all when None), newest first,
    and the cursor of the next page (None: this was the last)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    stmt = select(AuditEvent)
    if flt.person_id is not None:
        stmt = stmt.where(AuditEvent.person_id == flt.person_id)
    if flt.key_id is not None:
        stmt = stmt.where(AuditEvent.key_id == flt.key_id)
    if flt.actions:
        stmt = stmt.where(AuditEvent.action.in_(flt.actions))
    if flt.result is not None:
        stmt = stmt.where(AuditEvent.result == flt.result)
    if flt.since is not None:
        stmt = stmt.where(AuditEvent.at >= _utc(flt.since))
    if flt.until is not None:
        stmt = stmt.where(AuditEvent.at < _utc(flt.until))
    if cursor is not None:
        stmt = stmt.where(AuditEvent.id < cursor)
    rows = s.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [row_dict(r) for r in rows], (rows[-1].id if more and rows else None)


def read_page(
    sessions: sessionmaker[Session], flt: AuditFilter, limit: int, cursor: int | None = None
) -> tuple[list[dict], int | None]:
    with sessions() as s:
        return page(s, flt, limit, cursor)
