"""People who leave or pause: suspension, expiry and who may be matched now.

A person is **matchable** when their ``status`` is ``active`` and their ``expires_at`` (if any) is
still in the future. Someone who is not matchable stays in the database with the reference crop
and every embedding (so reactivating them needs no new photo and a model swap still embeds them),
but the gallery never hands them out: ``/verify`` refuses them (409 ``person_suspended`` or
``person_expired``), ``/identify`` never lists them, the duplicate check at enrolment does not see
them, and the gallery size that sets the 1:N threshold does not count them.

``Availability`` is the gallery's in-memory view of who is not matchable. Expiry is checked
against the clock at each query, so it takes effect at the stated moment without anyone acting,
on every replica. A status change commits a ``change_log`` row with the person's new state, so
the other replicas re-read it (``SyncedGallery.refresh``) like an enrolment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.errors import FaceGateError
from service.gallery import queries
from service.gallery.records import PersonRecord
from service.gallery.tables import PERSON_STATUSES, AuditEvent, ChangeLog, Person, as_utc, utcnow


class PersonSuspended(FaceGateError):
    status, code, title = 409, "person_suspended", "Person suspended"


class PersonExpired(FaceGateError):
    status, code, title = 409, "person_expired", "Person's access has expired"


@dataclass(frozen=True)
class Standing:
    """What keeps a person from being matched: a suspension, an expiry date, or both."""

    suspended: bool
    expires_at: datetime | None

    def reason(self, now: datetime) -> str | None:
        """``suspended``, ``expired`` or None (matchable) at ``now``."""
        if self.suspended:
            return "suspended"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return None

    @classmethod
    def of(cls, status: str, expires_at: datetime | None) -> Standing | None:
        """None for an active person without an expiry date (nothing to remember)."""
        if status == "active" and expires_at is None:
            return None
        return cls(status == "suspended", None if expires_at is None else as_utc(expires_at))


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Availability:
    """Who is not matchable, kept in memory beside the index; safe to read from many threads.

    Only people who are suspended or have an expiry date are held. ``blocked()`` is cached until
    the next change or the next expiry date, so a search pays for it only when it changes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._standings: dict[str, Standing] = {}
        self._blocked: frozenset[str] = frozenset()
        self._valid_until: datetime | None = None  # the cache holds until then (None: until a change)
        self._fresh = False

    def reset(self, standings: dict[str, Standing]) -> None:
        with self._lock:
            self._standings = dict(standings)
            self._fresh = False

    def update(self, person_id: str, standing: Standing | None) -> None:
        """Remember ``standing`` for the person (None: matchable, nothing to remember)."""
        with self._lock:
            if standing is None:
                self._standings.pop(person_id, None)
            else:
                self._standings[person_id] = standing
            self._fresh = False

    def update_many(self, person_ids: Iterable[str], standings: dict[str, Standing]) -> None:
        with self._lock:
            for pid in person_ids:
                standing = standings.get(pid)
                if standing is None:
                    self._standings.pop(pid, None)
                else:
                    self._standings[pid] = standing
            self._fresh = False

    def reason(self, person_id: str, now: datetime | None = None) -> str | None:
        """Why the person is not matchable now (``suspended``, ``expired``), or None."""
        standing = self._standings.get(person_id)
        return None if standing is None else standing.reason(now or _now())

    def standing(self, person_id: str) -> Standing | None:
        return self._standings.get(person_id)

    def blocked(self, now: datetime | None = None) -> frozenset[str]:
        """Everyone who is not matchable at ``now``."""
        now = now or _now()
        with self._lock:
            if self._fresh and (self._valid_until is None or now < self._valid_until):
                return self._blocked
            blocked: set[str] = set()
            upcoming: datetime | None = None
            for pid, standing in self._standings.items():
                if standing.reason(now) is not None:
                    blocked.add(pid)
                elif standing.expires_at is not None and (upcoming is None or standing.expires_at < upcoming):
                    upcoming = standing.expires_at
            self._blocked, self._valid_until, self._fresh = frozenset(blocked), upcoming, True
            return self._blocked


# ---- the database ----


def _held(s: Session, person_ids: list[str] | None) -> dict[str, Standing]:
    stmt = select(Person.person_id, Person.status, Person.expires_at).where(
        or_(Person.status != "active", Person.expires_at.is_not(None))
    )
    if person_ids is not None:
        stmt = stmt.where(Person.person_id.in_(person_ids))
    out: dict[str, Standing] = {}
    for row in s.execute(stmt):
        standing = Standing.of(row.status, row.expires_at)
        if standing is not None:
            out[row.person_id] = standing
    return out


def read_all(s: Session) -> dict[str, Standing]:
    """Every person who is suspended or has an expiry date."""
    return _held(s, None)


def read(s: Session, person_ids: list[str]) -> dict[str, Standing]:
    """The standings of these people (absent: matchable or not enrolled)."""
    return _held(s, person_ids) if person_ids else {}


@dataclass(frozen=True)
class StatusChange:
    """A change of status and/or expiry: ``status`` None keeps the stored one; ``expires_at`` is
    stored only when ``set_expiry`` (None then clears it)."""

    status: str | None = None  # None: unchanged
    expires_at: datetime | None = None
    set_expiry: bool = False  # True: store ``expires_at`` (None clears it)

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in PERSON_STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(PERSON_STATUSES)}")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must carry a time zone")


def action_of(change: StatusChange) -> str:
    """The audit action a change is recorded as: what was asked, changed or not (the row's
    result says ``unchanged`` when nothing changed)."""
    if change.status == "suspended":
        return "suspend"
    if change.status == "active":
        return "reactivate"
    return "person_update"


def apply(
    s: Session, person_id: str, change: StatusChange, audit: AuditEvent | None
) -> tuple[PersonRecord, Standing | None]:
    """Store ``change`` for the person inside the caller's write transaction, with a change-log
    row (other replicas re-read the person) and ``audit`` (its action set from the change).
    Raises PersonNotFound. The caller commits."""
    person = s.scalar(select(Person).where(Person.person_id == queries.lookup_id(person_id)))
    if person is None:
        raise queries.not_found(person_id)
    old = {"status": person.status, "expires_at": _iso(person.expires_at)}
    now = utcnow()
    if change.status is not None and change.status != person.status:
        person.status = change.status
        person.suspended_at = now if change.status == "suspended" else None
    if change.set_expiry:
        person.expires_at = None if change.expires_at is None else change.expires_at.astimezone(timezone.utc)
    new = {"status": person.status, "expires_at": _iso(person.expires_at)}
    if new != old:
        person.updated_at = now
        s.add(ChangeLog(op="upsert", person_id=person.person_id, at=now))
    if audit is not None:
        audit.action = action_of(change)
        audit.person_id, audit.at = person.person_id, now
        audit.result = "ok" if new != old else "unchanged"
        audit.detail = {**(audit.detail or {}), "before": old, "after": new}
        s.add(audit)
    s.flush()
    record = queries.get_record(s, person.person_id)
    return record, Standing.of(person.status, person.expires_at)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else as_utc(t).isoformat()


def refusal(person_id: str, reason: str, standing: Standing | None) -> FaceGateError:
    """The error /verify answers for a person who is not matchable."""
    expires = None if standing is None or standing.expires_at is None else standing.expires_at.isoformat()
    if reason == "expired":
        return PersonExpired(
            f"person {person_id!r} expired at {expires} and is not matched until their expiry date is "
            "moved or cleared",
            person_id=person_id,
            expires_at=expires,
        )
    return PersonSuspended(
        f"person {person_id!r} is suspended and is not matched until reactivated",
        person_id=person_id,
        expires_at=expires,
    )
