"""The gallery: the database (source of truth) and the FAISS index kept in step."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.collection_index import DEFAULT_ONLY, CollectionIndex, memberships
from service.errors import AlreadyEnrolled, InvalidRequest, PersonNotFound
from service.gallery import cipher, membership, queries, status
from service.gallery.consistency import ConsistencyReport, compare
from service.gallery.db import write_session
from service.gallery.records import Candidate, PersonRecord
from service.gallery.tables import (
    CROP_KINDS,
    AuditEvent,
    ChangeLog,
    CollectionMember,
    Embedding,
    Person,
    ReferenceCrop,
    utcnow,
)
from service.index import FaceIndex

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_NAME = 200


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("the reference crop must be a PNG image")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _text(value: str, what: str, limit: int) -> str:
    if not value or len(value) > limit or "\x00" in value:
        raise InvalidRequest(f"{what} must be 1 to {limit} characters long, without NUL", field=what)
    return value


def check_enrolment(
    dim: int,
    person_id: str,
    name: str,
    photo_sha256: str,
    embedding: np.ndarray,
    crop_kind: str,
    face_meta: dict[str, Any],
    collections: Sequence[str],
) -> np.ndarray:
    """An enrolment's arguments checked before any write (ValueError naming the first bad one);
    returns the embedding as float32. ``Gallery.enroll`` and the bulk batches share it."""
    vector = np.asarray(embedding, dtype=np.float32)
    if vector.shape != (dim,) or not np.isfinite(vector).all():
        raise ValueError(f"embedding must be {dim} finite numbers, got shape {vector.shape}")
    _text(person_id, "person_id", queries.MAX_PERSON_ID)
    _text(name, "name", MAX_NAME)
    if len(photo_sha256) != 64 or not all(c in "0123456789abcdef" for c in photo_sha256):
        raise ValueError("photo_sha256 must be 64 lowercase hexadecimal digits")
    if crop_kind not in CROP_KINDS:
        raise ValueError(f"unknown crop kind {crop_kind!r}; valid: {', '.join(CROP_KINDS)}")
    try:
        json.dumps(face_meta)  # fail here, before any write
    except (TypeError, ValueError) as exc:
        raise ValueError(f"face_meta must be JSON-serialisable: {exc}") from exc
    for c in collections:
        membership.check_name(c, "collections")
    return vector


@dataclass(frozen=True)
class GalleryImage:
    """A gallery's in-memory state, for an index snapshot (``service.snapshot``)."""

    indexes: Mapping[str, bytes | memoryview]  # collection -> FaceIndex.serialize() (a view when read back)
    ids: np.ndarray  # embedding ids, int64
    person_ids: list[str]  # of each id
    names: list[str]


class Gallery:
    """Enrolled people for one model version.

    Writes run one at a time (``_write`` in this process, the database's write lock across
    processes). Each commits to the database first and then updates the index; should the index
    update fail, the index is rebuilt from the database, so the two never stay apart. Reads
    (``search``, ``embedding_of``, ``size``) use the index and in-memory maps only.

    The index is a ``CollectionIndex``: one exact index per collection (a plain ``FaceIndex``
    passed in becomes the ``default`` collection's).
    """

    def __init__(
        self, session_factory: sessionmaker[Session], index: FaceIndex | CollectionIndex, model_version: str
    ) -> None:
        self.session_factory = session_factory
        self.index = index if isinstance(index, CollectionIndex) else CollectionIndex(index)
        self.model_version = model_version
        self._write = threading.Lock()
        self._by_id: dict[int, tuple[str, str]] = {}  # embedding id -> (person_id, name)
        self._by_person: dict[str, int] = {}  # person_id -> embedding id
        self._stale = True  # the index may differ from the database until the next load()
        self.availability = status.Availability()  # who is suspended or expired: never matched

    # ---- loading ----

    def load(self) -> int:
        """(Re)build the index from the database's embeddings for this model version."""
        with self._write:
            return self._load()

    def _load(self) -> int:
        self._stale = True
        with self.session_factory() as s:
            rows = s.execute(
                select(Embedding.id, Embedding.person_pk, Embedding.vector, Person.person_id, Person.name)
                .join(Person, Person.id == Embedding.person_pk)
                .where(Embedding.model_version == self.model_version)
                .order_by(Embedding.id)
            ).all()
            standings = status.read_all(s)
            members = membership.read(s)
            names = membership.all_names(s)
        opened = cipher.of(s)  # stored sealed when encryption is on; the index holds them in clear
        vectors = [
            np.frombuffer(opened.open_vector(r.vector, r.person_pk, self.model_version), np.float32)
            for r in rows
        ]
        if any(v.shape != (self.index.dim,) for v in vectors):
            raise ValueError(
                f"stored embeddings for {self.model_version} do not have {self.index.dim} dimensions"
            )
        stacked = np.stack(vectors) if vectors else np.zeros((0, self.index.dim), np.float32)
        self.index.declare(names)
        self.index.rebuild(
            [r.id for r in rows], stacked, [members.get(r.person_pk, DEFAULT_ONLY) for r in rows]
        )
        self._by_id = {r.id: (r.person_id, r.name) for r in rows}
        self._by_person = {r.person_id: r.id for r in rows}
        self.availability.reset(standings)
        self._stale = False
        log.debug("gallery %s: %d embeddings indexed", self.model_version, len(rows))
        return len(rows)

    def image(self) -> GalleryImage:
        """What a snapshot holds: every collection's index and who each embedding is (under the
        write lock, so a snapshot is one state of the gallery)."""
        with self._write:
            if self._stale:
                raise RuntimeError("the index is stale: rebuild it before taking a snapshot")
            return GalleryImage(
                self.index.serialize(),
                np.fromiter(self._by_id.keys(), np.int64, len(self._by_id)),
                [who[0] for who in self._by_id.values()],
                [who[1] for who in self._by_id.values()],
            )

    def adopt(self, image: GalleryImage) -> None:
        """Take the index and maps from a snapshot (``image``) instead of the database;
        suspensions and expiries are read from the database. Changes since the snapshot are the
        caller's to replay (``SyncedGallery.refresh``)."""
        if not len(image.ids) == len(image.person_ids) == len(image.names):
            raise ValueError("the snapshot's ids, person ids and names differ in length")
        with self._write:
            self._stale = True
            with self.session_factory() as s:
                standings = status.read_all(s)
                names = membership.all_names(s)
            self.index.restore(image.indexes)
            self.index.declare(names)
            ids = image.ids.tolist()
            if set(ids) != self.index.ids():
                self._stale = True
                raise ValueError("the snapshot's people do not match its index")
            self._by_id = dict(zip(ids, zip(image.person_ids, image.names)))
            self._by_person = {pid: i for i, pid in zip(ids, image.person_ids)}
            self.availability.reset(standings)
            self._stale = False

    # ---- writes ----

    def enroll(
        self,
        person_id: str | None,
        name: str,
        crop_png: bytes,
        face_meta: dict[str, Any],
        photo_sha256: str,
        embedding: np.ndarray,
        replace: bool = False,
        *,
        crop_size: tuple[int, int] | None = None,
        crop_kind: str = "chip",
        audit: AuditEvent | None = None,
        collections: Sequence[str] | None = None,
        new_collections: Sequence[str] | None = None,
    ) -> PersonRecord:
        """Store a person (``person_id`` None: a new uuid4 hex) with the aligned reference crop and
        its embedding. An existing person raises AlreadyEnrolled unless ``replace``, which swaps
        name, crop and embedding in one transaction (embeddings of other model versions, made from
        the old crop, are dropped). ``crop_kind`` says what ``crop_png`` is (``chip``: the
        model's own crop; ``canvas``: the model-independent canvas, see ``ReferenceCrop``).
        ``audit`` is committed in the same transaction, with the stored person's id and the action
        ``replace`` when an existing person was replaced: no write without its audit row.
        ``collections``: the person's collections (None: ``new_collections`` for a new person,
        else ``default``; a replaced person's are unchanged). Nothing is stored when anything is
        invalid."""
        pid = person_id or uuid.uuid4().hex
        vector = check_enrolment(
            self.index.dim,
            pid,
            name,
            photo_sha256,
            embedding,
            crop_kind,
            face_meta,
            [*(collections or ()), *(new_collections or ())],
        )
        width, height = crop_size or png_size(crop_png)
        with self._write:
            self._reload_if_stale()
            with write_session(self.session_factory) as s:
                person = s.scalar(
                    select(Person).where(Person.person_id == pid).options(selectinload(Person.crop))
                )
                now = utcnow()
                old_ids: list[int] = []
                replaced = person is not None
                if person is not None:
                    if not replace:
                        raise AlreadyEnrolled(
                            f"person {pid!r} is already enrolled; set replace=true to replace the reference",
                            person_id=pid,
                        )
                    old_ids = self._embedding_ids(s, person.id)
                    s.execute(delete(Embedding).where(Embedding.person_pk == person.id))
                    person.name, person.updated_at = name, now
                else:
                    person = Person(person_id=pid, name=name, created_at=now, updated_at=now)
                    s.add(person)
                    s.flush()
                if collections is None and not replaced and new_collections is not None:
                    collections = new_collections
                if collections is not None:
                    groups = membership.write(s, person.id, collections)
                else:
                    groups = memberships(membership.read(s, [person.id]).get(person.id))
                if person.crop is None:
                    person.crop = ReferenceCrop(person_pk=person.id)
                sealed_crop = cipher.of(s).seal_crop(crop_png, person.id)
                person.crop.image_png, person.crop.width, person.crop.height = sealed_crop, width, height
                person.crop.meta, person.crop.photo_sha256, person.crop.created_at = (
                    face_meta,
                    photo_sha256,
                    now,
                )
                person.crop.kind = crop_kind
                emb = Embedding(
                    person_pk=person.id,
                    model_version=self.model_version,
                    vector=cipher.of(s).seal_vector(vector.tobytes(), person.id, self.model_version),
                    created_at=now,
                )
                s.add(emb)
                s.add(ChangeLog(op="upsert", person_id=pid, at=now))
                if audit is not None:
                    audit.person_id, audit.at = pid, now
                    if replaced:
                        audit.action = "replace"
                    s.add(audit)
                s.flush()
                s.expire(person, ["embeddings", "collections"])
                record = queries.to_record(person, replaced=replaced)
                self._commit(s)
            self._update_index(old_ids, (emb.id, vector), pid, name, groups)
            if not replaced:  # a new person is active; a replaced one keeps their status
                self.availability.update(pid, None)
        log.debug("enrolled %s (replaced: %s)", pid, record.replaced)
        return record

    def delete(self, person_id: str, audit: AuditEvent | None = None) -> None:
        """Remove the person, the crop, every embedding (all model versions) and the index entries,
        committing ``audit`` in the same transaction. Audit rows keep the person_id string only."""
        with self._write:
            self._reload_if_stale()
            with write_session(self.session_factory) as s:
                pk = queries.person_pk(s, person_id)
                ids = self._embedding_ids(s, pk)
                s.execute(delete(Embedding).where(Embedding.person_pk == pk))
                s.execute(delete(ReferenceCrop).where(ReferenceCrop.person_pk == pk))
                s.execute(delete(CollectionMember).where(CollectionMember.person_pk == pk))
                s.execute(delete(Person).where(Person.id == pk))
                s.add(ChangeLog(op="delete", person_id=person_id))
                if audit is not None:
                    audit.person_id = person_id
                    s.add(audit)
                self._commit(s)
            self._update_index(ids, None, person_id, None)
            self.availability.update(person_id, None)
        log.debug("deleted %s", person_id)

    def set_status(
        self, person_id: str, change: status.StatusChange, audit: AuditEvent | None = None
    ) -> PersonRecord:
        """Suspend, reactivate or set the expiry of a person (``service.gallery.status``), with a
        change-log row and ``audit`` in the same transaction. The index keeps the embedding: a
        person who is not matchable is skipped at search time, so reactivation is immediate."""
        with self._write:
            self._reload_if_stale()
            with write_session(self.session_factory) as s:
                record, standing = status.apply(s, person_id, change, audit)
                self._commit(s)
            self.availability.update(person_id, standing)
        return record

    def edit_collections(
        self,
        person_id: str,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        audit: AuditEvent | None = None,
    ) -> PersonRecord:
        """Add the person to and remove them from collections, with a change-log row (replicas
        re-read the membership) and ``audit`` in the same transaction."""
        add, remove = [membership.check_name(n) for n in add], [membership.check_name(n) for n in remove]
        with self._write:
            self._reload_if_stale()
            with write_session(self.session_factory) as s:
                pk = queries.person_pk(s, person_id)
                current = memberships(membership.read(s, [pk]).get(pk))
                after = membership.edited(current, add, remove, person_id)
                membership.write(s, pk, after)
                s.add(ChangeLog(op="upsert", person_id=person_id))
                if audit is not None:
                    audit.person_id = person_id
                    audit.detail = {**(audit.detail or {}), "collections": sorted(after)}
                    s.add(audit)
                record = queries.get_record(s, person_id)
                self._commit(s)
            eid = self._by_person.get(person_id)
            if eid is not None:
                self.index.move(eid, after)
        return record

    def _embedding_ids(self, s: Session, person_pk: int) -> list[int]:
        return list(
            s.scalars(
                select(Embedding.id).where(
                    Embedding.person_pk == person_pk, Embedding.model_version == self.model_version
                )
            )
        )

    def _commit(self, s: Session) -> None:
        try:
            s.commit()
        except Exception:
            # The commit may have gone through (a connection lost during COMMIT): re-read.
            log.exception("gallery commit failed; re-reading the index from the database")
            s.rollback()
            self._reload_after_failure()
            raise

    def _update_index(
        self,
        remove: list[int],
        add: tuple[int, np.ndarray] | None,
        pid: str,
        name: str | None,
        groups: frozenset[str] = DEFAULT_ONLY,
    ) -> None:
        try:
            if remove:
                self.index.remove(remove)
                for i in remove:
                    self._by_id.pop(i, None)
                self._by_person.pop(pid, None)
            if add is not None:
                self.index.add([add[0]], add[1][None, :], [groups])
                self._by_id[add[0]] = (pid, name or pid)
                self._by_person[pid] = add[0]
        except Exception:
            log.exception("index update failed after the commit; rebuilding the index from the database")
            self._reload_after_failure()

    def _reload_if_stale(self) -> None:
        """A write starts from an index equal to the database, or does not start at all."""
        if self._stale:
            self._load()

    def _reload_after_failure(self) -> None:
        self._stale = True
        try:
            self._load()
        except Exception:
            log.exception("rebuilding the index failed; it stays stale until the next load()")

    # ---- reads ----

    def get(self, person_id: str) -> PersonRecord:
        with self.session_factory() as s:
            return queries.get_record(s, person_id)

    def page(
        self, offset: int, limit: int, query: str | None, collection: str | None = None
    ) -> tuple[list[PersonRecord], int]:
        """Up to ``limit`` people from ``offset``, matching ``query`` and in ``collection`` when
        given, and the total matching."""
        with self.session_factory() as s:
            return queries.list_records(s, offset, limit, query, collection)

    def collection_sizes(self) -> dict[str, tuple[int, int]]:
        """{collection: (people stored in it, people it searches now: its 1:N N)}."""
        with self.session_factory() as s:
            stored = membership.stored_sizes(s)
        names = set(stored) | set(self.index.names())
        return {n: (stored.get(n, 0), self.size([n])) for n in sorted(names)}

    def knows_collection(self, name: str) -> bool:
        return self.index.knows(name)

    def crop(self, person_id: str) -> bytes:
        with self.session_factory() as s:
            return queries.crop_png(s, person_id)

    def export(self, person_id: str, audit: AuditEvent | None = None) -> dict[str, Any]:
        """Everything stored about the person; ``audit`` (the export itself) is committed first,
        so the export lists it, and nothing is handed out unrecorded."""
        with self.session_factory.begin() as s:  # PersonNotFound rolls the audit row back
            if audit is not None:
                audit.person_id = person_id
                s.add(audit)
                s.flush()
            return queries.export_person(s, person_id)

    def embedding_of(self, person_id: str) -> np.ndarray:
        """The person's embedding for this model version (from the index: no database query)."""
        eid = self._by_person.get(person_id)
        vector = None if eid is None else self.index.vector(eid)
        if vector is None:
            raise queries.not_found(person_id)
        return vector

    def search(
        self, vector: np.ndarray, k: int, collections: Collection[str] | None = None
    ) -> list[Candidate]:
        """Up to ``k`` people of ``collections`` (None: ``default``), best first, one entry per person."""
        blocked = self.availability.blocked()
        exclude = [e for e in map(self._by_person.get, blocked) if e is not None]
        sims, ids = self.index.search(
            np.asarray(vector, np.float32).reshape(1, -1), k, exclude, collections or DEFAULT_ONLY
        )
        out: list[Candidate] = []
        seen: set[str] = set()
        for sim, i in zip(sims[0].tolist(), ids[0].tolist()):
            who = self._by_id.get(i) if i >= 0 else None
            if who is not None and who[0] not in seen:
                seen.add(who[0])
                out.append(Candidate(who[0], who[1], sim))
        return out

    def size(self, collections: Collection[str] | None = None) -> int:
        """People with an embedding for this model version who may be matched now (not suspended,
        not expired), in any of ``collections`` (None: everyone): the N of the 1:N threshold."""
        blocked = self.availability.blocked()
        if collections is None:
            return len(self._by_person) - sum(1 for p in blocked if p in self._by_person)
        held = [e for e in map(self._by_person.get, blocked) if e is not None]
        return self.index.count(collections) - self.index.count(collections, among=held)

    def collections_of(self, person_id: str) -> frozenset[str]:
        """The collections the person is indexed in (empty when not indexed)."""
        eid = self._by_person.get(person_id)
        return frozenset() if eid is None else self.index.collections_of(eid)

    @property
    def stale(self) -> bool:
        return self._stale

    def consistency_check(self) -> bool:
        """True when the index holds exactly the database's embeddings for this model version."""
        return self.consistency_report().consistent

    def consistency_report(self) -> ConsistencyReport:
        """Every stored embedding id of this model version against the index (O(N), under the
        write lock: a background job's and the admin endpoint's check, not readiness's)."""
        with self._write, self.session_factory() as s:
            rows = s.execute(
                select(Embedding.id, Person.person_id)
                .join(Person, Person.id == Embedding.person_pk)
                .where(Embedding.model_version == self.model_version)
            ).all()
            return compare(
                self.model_version,
                {r.id: r.person_id for r in rows},
                self.index.ids(),
                {i: who[0] for i, who in self._by_id.items()},
                self._by_person,
                self._stale,
            )

    def stored_count(self) -> int:
        """Embeddings stored for this model version (one COUNT over an index of the table)."""
        with self.session_factory() as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Embedding)
                    .where(Embedding.model_version == self.model_version)
                )
                or 0
            )

    def counts_agree(self) -> bool:
        """The index and both in-memory maps hold as many entries, and the index is not stale
        (no lock, no database: a cheap readiness test)."""
        n = len(self.index)
        return not self._stale and n == len(self._by_id) == len(self._by_person)

    def writes_paused(self, timeout: float) -> threading.Lock | None:
        """The write lock when it was taken within ``timeout`` seconds (release it), else None."""
        return self._write if self._write.acquire(timeout=timeout) else None


__all__ = ["Candidate", "Gallery", "PersonNotFound", "PersonRecord", "png_size"]
