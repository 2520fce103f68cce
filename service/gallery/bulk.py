"""Many enrolments in one write transaction (``facegate enroll-dir``'s batches).

``enroll_batch`` stores what ``Gallery.enroll`` stores for each person (the person, the reference
crop, the embedding, the collections, a change-log row and the audit row), for a whole batch in one
transaction: it commits entirely or not at all, so an interrupted import never leaves half a
person, and a rerun finds each person either fully enrolled or absent. The index and the in-memory
maps are updated once for the batch, after the commit (a failed update rebuilds them from the
database, as ``Gallery`` does). A ``SyncedGallery`` records each crop's alignment and tells its
listeners of each person, as its ``enroll`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from service.collection_index import DEFAULT_ONLY, memberships
from service.crop_embed import canvas_alignment_meta
from service.gallery import cipher, membership
from service.gallery.db import write_session
from service.gallery.gallery import Gallery, check_enrolment
from service.gallery.synced import SyncedGallery
from service.gallery.tables import AuditEvent, ChangeLog, Embedding, Person, ReferenceCrop, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewPerson:
    """One person of a batch: ``Gallery.enroll``'s arguments."""

    person_id: str
    name: str
    crop_png: bytes
    crop_size: tuple[int, int]  # (width, height)
    face_meta: dict[str, Any]
    photo_sha256: str
    embedding: np.ndarray
    crop_kind: str = "canvas"
    audit: AuditEvent | None = None
    collections: tuple[str, ...] | None = None  # None: default for a new person, unchanged when replaced


@dataclass
class BatchResult:
    stored: list[str] = field(default_factory=list)  # person_ids written, in batch order
    replaced: list[str] = field(default_factory=list)  # of those, the ones who were enrolled before
    already_enrolled: list[str] = field(default_factory=list)  # skipped: enrolled, and not ``replace``


def _check(gallery: Gallery, p: NewPerson) -> np.ndarray:
    """``Gallery.enroll``'s checks of its arguments; returns the embedding as float32."""
    return check_enrolment(
        gallery.index.dim,
        p.person_id,
        p.name,
        p.photo_sha256,
        p.embedding,
        p.crop_kind,
        p.face_meta,
        list(p.collections or ()),
    )


def _meta(gallery: Gallery, p: NewPerson) -> dict[str, Any]:
    """The crop's meta as stored: a ``SyncedGallery`` adds the crop's alignment (``SyncedGallery.enroll``)."""
    if not isinstance(gallery, SyncedGallery):
        return p.face_meta
    frame = canvas_alignment_meta() if p.crop_kind == "canvas" else gallery.alignment
    return {**p.face_meta, "alignment": frame} if frame else p.face_meta


def enroll_batch(gallery: Gallery, people: Sequence[NewPerson], replace: bool = False) -> BatchResult:
    """Store ``people`` in one transaction (nothing is stored when any of them is invalid).

    A person already enrolled is replaced when ``replace`` (as ``Gallery.enroll`` replaces:
    name, crop and embedding swapped, other model versions' embeddings dropped, collections kept
    unless given), else left as they are and listed in ``already_enrolled``."""
    result = BatchResult()
    if not people:
        return result
    vectors = [_check(gallery, p) for p in people]
    ids = [p.person_id for p in people]
    if len(set(ids)) != len(ids):
        raise ValueError("a batch names a person_id more than once")
    metas = [_meta(gallery, p) for p in people]
    written: list[tuple[Embedding, np.ndarray, str, str, frozenset[str]]] = []
    old_ids: list[int] = []
    with gallery._write:
        gallery._reload_if_stale()
        with write_session(gallery.session_factory) as s:
            existing = {
                person.person_id: person
                for person in s.scalars(
                    select(Person).where(Person.person_id.in_(ids)).options(selectinload(Person.crop))
                )
            }
            now = utcnow()
            rows: list[tuple[NewPerson, np.ndarray, dict[str, Any], Person, bool]] = []
            for p, vector, meta in zip(people, vectors, metas):
                person = existing.get(p.person_id)
                if person is not None and not replace:
                    result.already_enrolled.append(p.person_id)
                    continue
                if person is not None:
                    old_ids += gallery._embedding_ids(s, person.id)
                    s.execute(delete(Embedding).where(Embedding.person_pk == person.id))
                    person.name, person.updated_at = p.name, now
                else:
                    person = Person(person_id=p.person_id, name=p.name, created_at=now, updated_at=now)
                    s.add(person)
                rows.append((p, vector, meta, person, p.person_id in existing))
            s.flush()  # the new people's row ids
            stored_groups = membership.read(s, [person.id for _, _, _, person, was in rows if was])
            sealer = cipher.of(s)
            for p, vector, meta, person, was in rows:
                if p.collections is not None:
                    groups = membership.write(s, person.id, p.collections)
                elif was:
                    groups = memberships(stored_groups.get(person.id))
                else:
                    groups = DEFAULT_ONLY
                crop = person.crop if was and person.crop is not None else ReferenceCrop(person_pk=person.id)
                crop.image_png = sealer.seal_crop(p.crop_png, person.id)
                crop.width, crop.height = p.crop_size
                crop.meta, crop.photo_sha256, crop.created_at, crop.kind = (
                    meta,
                    p.photo_sha256,
                    now,
                    p.crop_kind,
                )
                s.add(crop)
                emb = Embedding(
                    person_pk=person.id,
                    model_version=gallery.model_version,
                    vector=sealer.seal_vector(vector.tobytes(), person.id, gallery.model_version),
                    created_at=now,
                )
                s.add(emb)
                s.add(ChangeLog(op="upsert", person_id=p.person_id, at=now))
                if p.audit is not None:
                    p.audit.person_id, p.audit.at = p.person_id, now
                    if was:
                        p.audit.action = "replace"
                    s.add(p.audit)
                result.stored.append(p.person_id)
                if was:
                    result.replaced.append(p.person_id)
                written.append((emb, vector, p.person_id, p.name, groups))
            s.flush()  # the embeddings' ids
            added = [(emb.id, vector, pid, name, groups) for emb, vector, pid, name, groups in written]
            gallery._commit(s)
        _update_index(gallery, old_ids, result.replaced, added)
        for pid in result.stored:
            if pid not in result.replaced:  # a new person is active; a replaced one keeps their status
                gallery.availability.update(pid, None)
    if isinstance(gallery, SyncedGallery):
        for pid in result.stored:
            gallery._notify(pid)
    log.debug("enrolled a batch of %d (%d replaced)", len(result.stored), len(result.replaced))
    return result


def _update_index(
    gallery: Gallery,
    remove: list[int],
    replaced: list[str],
    added: list[tuple[int, np.ndarray, str, str, frozenset[str]]],
) -> None:
    """The batch's changes, in the index and the maps at once (``Gallery._update_index`` for many)."""
    try:
        if remove:
            gallery.index.remove(remove)
            for i in remove:
                gallery._by_id.pop(i, None)
            for pid in replaced:
                gallery._by_person.pop(pid, None)
        if added:
            gallery.index.add([a[0] for a in added], np.stack([a[1] for a in added]), [a[4] for a in added])
            for eid, _, pid, name, _ in added:
                gallery._by_id[eid] = (pid, name)
                gallery._by_person[pid] = eid
    except Exception:
        log.exception("index update failed after the commit; rebuilding the index from the database")
        gallery._reload_after_failure()
