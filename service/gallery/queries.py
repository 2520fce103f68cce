"""Read-only gallery queries: one person, a page of people, the crop, a full export."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from service.collection_index import memberships
from service.errors import InvalidRequest, PersonNotFound
from service.gallery import cipher, membership, search
from service.gallery.records import PersonRecord
from service.gallery.tables import AuditEvent, ChangeLog, Embedding, Person, ReferenceCrop, as_utc

# Load what a PersonRecord needs, not the crop image or the vectors.
_RECORD_LOAD = (
    selectinload(Person.embeddings).load_only(Embedding.model_version),
    selectinload(Person.crop).load_only(ReferenceCrop.width, ReferenceCrop.height),
    selectinload(Person.collections),
)


MAX_PERSON_ID = 128


def not_found(person_id: str) -> PersonNotFound:
    return PersonNotFound(f"no person {person_id!r} is enrolled", person_id=person_id)


def person_pk(s: Session, person_id: str) -> int:
    """The database key of ``person_id``'s row; PersonNotFound when there is none."""
    pk = s.scalar(select(Person.id).where(Person.person_id == lookup_id(person_id)))
    if pk is None:
        raise not_found(person_id)
    return pk


def lookup_id(person_id: str) -> str:
    """``person_id`` if it could be stored at all; else PersonNotFound without asking the database
    (PostgreSQL refuses NUL characters in text with an error instead of finding nothing)."""
    if not person_id or len(person_id) > MAX_PERSON_ID or "\x00" in person_id:
        raise not_found(person_id)
    return person_id


def to_record(p: Person, replaced: bool = False) -> PersonRecord:
    return PersonRecord(
        person_id=p.person_id,
        name=p.name,
        created_at=as_utc(p.created_at),
        updated_at=as_utc(p.updated_at),
        model_versions=tuple(sorted({e.model_version for e in p.embeddings})),
        crop_size=None if p.crop is None else (p.crop.width, p.crop.height),
        replaced=replaced,
        status=p.status or "active",
        suspended_at=None if p.suspended_at is None else as_utc(p.suspended_at),
        expires_at=None if p.expires_at is None else as_utc(p.expires_at),
        collections=tuple(sorted(memberships(c.name for c in p.collections))),
    )


def get_record(s: Session, person_id: str) -> PersonRecord:
    person = s.scalar(select(Person).where(Person.person_id == lookup_id(person_id)).options(*_RECORD_LOAD))
    if person is None:
        raise not_found(person_id)
    return to_record(person)


def list_records(
    s: Session, offset: int, limit: int, query: str | None, collection: str | None = None
) -> tuple[list[PersonRecord], int]:
    """A page ordered by (created_at, person_id) and the total count; ``query`` matches a
    substring of the name or person_id, ignoring case and accents (``search.fold``: "chavez" finds
    "Hugo Chávez"; ``%`` and ``_`` are literal); ``collection`` keeps its members only."""
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be non-negative, got {offset}, {limit}")
    if query and "\x00" in query:
        raise InvalidRequest("the search text must not contain NUL characters", field="q")
    stmt = select(Person)
    if collection is not None:
        stmt = stmt.where(membership.member_filter(s, membership.check_name(collection)))
    if query:
        q = search.fold(query)
        stmt = stmt.where(
            or_(
                search.folded(s, Person.name).contains(q, autoescape=True),
                search.folded(s, Person.person_id).contains(q, autoescape=True),
            )
        )
    total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    people = s.scalars(
        stmt.options(*_RECORD_LOAD).order_by(Person.created_at, Person.person_id).offset(offset).limit(limit)
    ).all()
    return [to_record(p) for p in people], int(total)


def crop_png(s: Session, person_id: str) -> bytes:
    row = s.execute(
        select(ReferenceCrop.person_pk, ReferenceCrop.image_png)
        .join(Person, Person.id == ReferenceCrop.person_pk)
        .where(Person.person_id == lookup_id(person_id))
    ).first()
    if row is None:
        raise not_found(person_id)
    return cipher.of(s).open_crop(row.image_png, row.person_pk)


def _iso(t) -> str | None:
    return None if t is None else as_utc(t).isoformat()


def export_person(s: Session, person_id: str) -> dict[str, Any]:
    """Everything stored about a person, JSON-ready: the record, the reference crop (base64 PNG)
    and its metadata, every embedding (all model versions), the audit rows and change-log rows
    naming them. The crop's ``kind`` says whether it is the enrolling model's crop (``chip``) or
    the model-independent canvas (``canvas``)."""
    p = s.scalar(
        select(Person)
        .where(Person.person_id == lookup_id(person_id))
        .options(selectinload(Person.embeddings), selectinload(Person.crop), selectinload(Person.collections))
    )
    if p is None:
        raise not_found(person_id)
    crop = p.crop
    opened = cipher.of(s)
    audit = s.scalars(select(AuditEvent).where(AuditEvent.person_id == person_id).order_by(AuditEvent.id))
    changes = s.scalars(select(ChangeLog).where(ChangeLog.person_id == person_id).order_by(ChangeLog.id))
    return {
        "person": {
            "person_id": p.person_id,
            "name": p.name,
            "created_at": _iso(p.created_at),
            "updated_at": _iso(p.updated_at),
            "status": p.status,
            "suspended_at": _iso(p.suspended_at),
            "expires_at": _iso(p.expires_at),
            "collections": sorted(memberships(c.name for c in p.collections)),
        },
        "reference_crop": None
        if crop is None
        else {
            "png_base64": base64.b64encode(opened.open_crop(crop.image_png, p.id)).decode(),
            "width": crop.width,
            "height": crop.height,
            "kind": crop.kind,
            "meta": crop.meta,
            "photo_sha256": crop.photo_sha256,
            "created_at": _iso(crop.created_at),
        },
        "embeddings": [
            {
                "id": e.id,
                "model_version": e.model_version,
                "vector": np.frombuffer(
                    opened.open_vector(e.vector, p.id, e.model_version), np.float32
                ).tolist(),
                "created_at": _iso(e.created_at),
            }
            for e in sorted(p.embeddings, key=lambda e: e.id)
        ],
        "audit": [
            {
                "at": _iso(a.at),
                "action": a.action,
                "key_id": a.key_id,
                "key_name": a.key_name,
                "result": a.result,
                "score": a.score,
                "model_version": a.model_version,
                "detail": a.detail,
            }
            for a in audit
        ],
        "changes": [{"at": _iso(c.at), "op": c.op} for c in changes],
    }
