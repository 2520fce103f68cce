"""Audit retention: rows older than ``FACEGATE_AUDIT_RETENTION_DAYS`` are deleted, and the purge
itself is recorded.

The access log holds no face, but it does hold who was where and when (person ids, key names,
results), which data-protection law wants kept no longer than needed (GDPR art. 5(1)(e); BIPA
§15(a) asks for a written retention schedule). ``0`` keeps every row forever.

A purge deletes in batches (each its own short write transaction, so enrolments are never held
up for long) and then adds one ``audit_purge`` row with the count, the cutoff and the retention.
The service purges by itself: ``AuditPurger`` runs at start-up and then every
``FACEGATE_AUDIT_PURGE_INTERVAL`` seconds (a row only when something was deleted);
``facegate audit purge`` runs one by hand (always recorded). Several replicas may purge at once:
the batches take the gallery write lock, so the second finds nothing left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.db import write_session
from service.gallery.tables import AuditEvent
from service.periodic import Periodic

log = logging.getLogger(__name__)

BATCH = 5_000
RETENTION = Caller(None, "retention (FACEGATE_AUDIT_RETENTION_DAYS)", frozenset({"admin"}))


@dataclass(frozen=True)
class PurgeResult:
    deleted: int
    cutoff: datetime
    retention_days: float


def cutoff_for(retention_days: float, now: datetime | None = None) -> datetime:
    if retention_days <= 0:
        raise ValueError("a retention of 0 days keeps every row: nothing to purge")
    return (now or datetime.now(timezone.utc)) - timedelta(days=retention_days)


def count_older(sessions: sessionmaker[Session], cutoff: datetime) -> int:
    """How many rows a purge at ``cutoff`` would delete (``--dry-run``)."""
    with sessions() as s:
        return int(s.scalar(select(func.count()).where(AuditEvent.at < cutoff)) or 0)


def purge(
    sessions: sessionmaker[Session],
    retention_days: float,
    caller: Caller = RETENTION,
    *,
    now: datetime | None = None,
    record_empty: bool = False,
    batch: int = BATCH,
) -> PurgeResult:
    """Delete the rows older than ``retention_days`` and record the purge (also when nothing was
    deleted if ``record_empty``)."""
    cutoff = cutoff_for(retention_days, now)
    deleted = 0
    while True:
        with write_session(sessions) as s:
            ids = list(
                s.scalars(
                    select(AuditEvent.id).where(AuditEvent.at < cutoff).order_by(AuditEvent.id).limit(batch)
                )
            )
            if ids:
                s.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)))
            if len(ids) < batch and (deleted + len(ids) or record_empty):
                detail = {
                    "deleted": deleted + len(ids),
                    "cutoff": cutoff.isoformat(),
                    "retention_days": retention_days,
                }
                s.add(audit.row(caller, "audit_purge", detail=detail))
            s.commit()
        deleted += len(ids)
        if len(ids) < batch:
            break
    if deleted:
        log.info("audit retention: %d rows older than %s deleted", deleted, cutoff.isoformat())
    return PurgeResult(deleted, cutoff, retention_days)


class AuditPurger:
    """A background thread purging at start-up and then every ``interval`` seconds (off when the
    retention is 0)."""

    def __init__(self, sessions: sessionmaker[Session], retention_days: float, interval: float) -> None:
        self.sessions = sessions
        self.retention_days = retention_days
        self.interval = interval
        self.last: PurgeResult | None = None
        self._worker = Periodic(
            "facegate-audit-purge", interval, self.run_once, "audit purge", first_now=True, join_timeout=10
        )

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0 and self.interval > 0

    def run_once(self) -> PurgeResult | None:
        if self.retention_days <= 0:
            return None
        self.last = purge(self.sessions, self.retention_days)
        return self.last

    def start(self) -> None:
        if self.enabled and self._worker.start():
            log.info("audit rows are kept %g days, purged every %g s", self.retention_days, self.interval)

    def stop(self) -> None:
        self._worker.stop()
