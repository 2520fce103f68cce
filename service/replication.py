"""Keeping several replicas on one database in step, through the ``change_log`` table.

Every enrolment, replacement and deletion commits a ``change_log`` row (op, person_id) in the
same transaction as the change. Gallery writes hold the database's write lock until they commit
(``service.gallery.db.write_session``), so log ids grow in commit order and a follower that
reads ``id > last seen`` misses nothing. Each replica runs a ``Replicator``: a background thread
that every ``FACEGATE_SYNC_INTERVAL`` seconds (0.5 by default) reads the new rows and refreshes
those people in its own FAISS index(es) from the database. A replica that was down catches up
anyway: it loads its index snapshot and replays the log since (``service.snapshot``), or rebuilds
its index from the database, when it starts.

Polling was chosen over PostgreSQL's LISTEN/NOTIFY: it works the same on SQLite (several
processes on one file), needs no dedicated connection, and a replica that misses a notification
(a dropped connection) cannot drift.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.gallery.tables import ChangeLog
from service.metrics import Metrics
from service.periodic import Periodic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    id: int
    op: str
    person_id: str
    at: datetime | None = None  # when it was written (UTC)


class ChangeFeed:
    """Reads the change log after a position."""

    def __init__(self, sessions: sessionmaker[Session], batch: int = 1000) -> None:
        self.sessions = sessions
        self.batch = batch

    def position(self) -> int:
        """The id of the newest change (0 for an empty log)."""
        with self.sessions() as s:
            return int(s.scalar(select(func.max(ChangeLog.id))) or 0)

    def since(self, after: int) -> list[Change]:
        """Changes with id > ``after``, oldest first, at most ``batch`` of them."""
        with self.sessions() as s:
            rows = s.execute(
                select(ChangeLog.id, ChangeLog.op, ChangeLog.person_id, ChangeLog.at)
                .where(ChangeLog.id > after)
                .order_by(ChangeLog.id)
                .limit(self.batch)
            ).all()
        return [Change(int(r.id), r.op, r.person_id, r.at) for r in rows]

    def all_since(self, after: int) -> list[Change]:
        """Every change with id > ``after``, oldest first (read ``batch`` at a time)."""
        out: list[Change] = []
        while changes := self.since(out[-1].id if out else after):
            out += changes
        return out

    def people_since(self, after: int) -> tuple[list[str], int]:
        """Every person changed after ``after`` (each once) and the new position."""
        changes = self.all_since(after)
        return list(dict.fromkeys(c.person_id for c in changes)), changes[-1].id if changes else after


class Replicator:
    """A background thread applying the change log to this replica's galleries.

    With ``metrics``, each poll records the position reached and, per change applied, the
    seconds since it was written (``Metrics.replicated``)."""

    def __init__(
        self,
        feed: ChangeFeed,
        apply: Callable[[list[str]], None],
        interval: float,
        position: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.feed = feed
        self.apply = apply
        self.interval = interval
        self.position = position
        self.metrics = metrics
        if metrics is not None:
            metrics.replicated(position)
        self._lock = threading.Lock()
        self._worker = Periodic(
            "facegate-replication", interval, self.poll_once, "replication poll", on_error=self._failed
        )

    def poll_once(self) -> int:
        """Apply what changed since the last poll; returns how many people were refreshed."""
        with self._lock:
            changes = self.feed.all_since(self.position)
            people = list(dict.fromkeys(c.person_id for c in changes))
            if people:
                self.apply(people)
                self.position = changes[-1].id
                log.debug("replication: %d people refreshed up to change %d", len(people), self.position)
            if self.metrics is not None:
                self.metrics.replicated(self.position, (c.at for c in changes))
            return len(people)

    def _failed(self) -> None:
        if self.metrics is not None:
            self.metrics.replication_failures.inc()

    def start(self) -> None:
        if self._worker.start():
            log.info("following the change log every %.2f s from change %d", self.interval, self.position)

    def stop(self) -> None:
        self._worker.stop()
