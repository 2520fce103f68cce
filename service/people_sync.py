"""``facegate people sync STAFF.csv``: suspend everyone enrolled who is not on the staff list.

The list is the organisation's current staff, one ``person_id`` per row (a ``person_id`` column
when the first row names one, else the first column). Everyone enrolled who is not on it and is
not suspended yet is suspended (``service.gallery.status``), in one write transaction with one
audit row per person and a ``people_sync`` summary row; running replicas see it through the
change log within ``FACEGATE_SYNC_INTERVAL``. Nobody is deleted: a person suspended by mistake is
reactivated with ``PATCH /people/{id}`` (or listed again and synced with ``--reactivate``).

An empty list is refused: it would suspend everyone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.gallery import audit, status
from service.gallery.audit import Caller
from service.gallery.db import write_session
from service.gallery.tables import Person


class EmptyStaffList(ValueError):
    pass


def read_staff(text: str) -> list[str]:
    """The person_ids of a staff CSV, in order, each once (blank cells skipped)."""
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    column = 0
    if rows:
        header = [c.strip().lower() for c in rows[0]]
        if "person_id" in header:
            column = header.index("person_id")
            rows = rows[1:]
    ids: dict[str, None] = {}
    for row in rows:
        if column < len(row) and row[column].strip():
            ids[row[column].strip()] = None
    if not ids:
        raise EmptyStaffList("the staff list names nobody; refusing to suspend everyone")
    return list(ids)


@dataclass(frozen=True)
class SyncPlan:
    suspend: list[str] = field(default_factory=list)  # enrolled, not listed, not suspended yet
    reactivate: list[str] = field(default_factory=list)  # listed and suspended (only with reactivate)
    listed_suspended: list[str] = field(default_factory=list)  # listed and suspended, left as they are
    unknown: list[str] = field(default_factory=list)  # listed but not enrolled
    kept: int = 0  # listed and active
    staff: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "staff": self.staff,
            "suspended": len(self.suspend),
            "reactivated": len(self.reactivate),
            "listed_but_suspended": len(self.listed_suspended),
            "listed_but_not_enrolled": len(self.unknown),
            "kept": self.kept,
        }


def plan(s: Session, staff: Iterable[str], reactivate: bool = False) -> SyncPlan:
    listed = set(staff)
    people = s.execute(select(Person.person_id, Person.status).order_by(Person.person_id)).all()
    enrolled = {p.person_id for p in people}
    suspended_listed = [p.person_id for p in people if p.person_id in listed and p.status == "suspended"]
    return SyncPlan(
        suspend=[p.person_id for p in people if p.person_id not in listed and p.status != "suspended"],
        reactivate=suspended_listed if reactivate else [],
        listed_suspended=[] if reactivate else suspended_listed,
        unknown=sorted(listed - enrolled),
        kept=sum(1 for p in people if p.person_id in listed and p.status != "suspended"),
        staff=len(listed),
    )


def preview(sessions: sessionmaker[Session], staff: list[str], reactivate: bool = False) -> SyncPlan:
    """What ``sync`` would do now (``--dry-run``): nothing is written."""
    with sessions() as s:
        return plan(s, staff, reactivate)


def sync(
    sessions: sessionmaker[Session],
    staff: list[str],
    caller: Caller,
    source: str,
    reactivate: bool = False,
) -> SyncPlan:
    """Suspend everyone enrolled who is not in ``staff`` (and, with ``reactivate``, reactivate
    suspended people who are), planned and applied in one write transaction, audited."""
    if not staff:
        raise EmptyStaffList("the staff list names nobody; refusing to suspend everyone")
    with write_session(sessions) as s:
        todo = plan(s, staff, reactivate)
        changes = [(pid, "suspended") for pid in todo.suspend] + [(pid, "active") for pid in todo.reactivate]
        for pid, new_status in changes:
            row = audit.row(caller, "person_update", detail={"by": "people_sync", "source": source})
            status.apply(s, pid, status.StatusChange(status=new_status), row)
        s.add(audit.row(caller, "people_sync", detail={"source": source, **todo.summary()}))
        s.commit()
    return todo
