"""The gallery: the database (source of truth) and the FAISS index kept in step under one lock."""

from __future__ import annotations

import base64
import threading
import uuid

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from service.errors import AlreadyEnrolled, PersonNotFound
from service.gallery.audit import rows_about
from service.gallery.records import Candidate, PersonRecord
from service.gallery.tables import ChangeLog, Embedding, Person, ReferenceCrop, utcnow
from service.index import FaceIndex


def _record(p: Person) -> PersonRecord:
    return PersonRecord(
        person_id=p.person_id,
        name=p.name,
        created_at=p.created_at,
        updated_at=p.updated_at,
        model_versions=tuple(sorted({e.model_version for e in p.embeddings})),
    )


class Gallery:
    """Enrolled people for one model version.

    Writes take ``_write`` so that the database and the index change together: the database is
    flushed, the index updated, then the transaction committed; if the commit fails the index
    change is undone. Reads search the index and map ids to people without touching the database.
    """

    def __init__(self, session_factory: sessionmaker, index: FaceIndex, model_version: str) -> None:
        self.session_factory = session_factory
        self.index = index
        self.model_version = model_version
        self._write = threading.Lock()
        self._by_id: dict[int, tuple[str, str]] = {}  # embedding id -> (person_id, name)
        self._by_person: dict[str, int] = {}  # person_id -> embedding id

    # ---- loading ----

    def load(self) -> int:
        """(Re)build the index from the database's embeddings for this model version."""
        with self._write, self.session_factory() as s:
            rows = s.execute(
                select(Embedding.id, Embedding.vector, Person.person_id, Person.name)
                .join(Person, Person.id == Embedding.person_pk)
                .where(Embedding.model_version == self.model_version)
            ).all()
            ids = [r.id for r in rows]
            vectors = (
                np.stack([np.frombuffer(r.vector, np.float32) for r in rows])
                if rows
                else np.zeros((0, self.index.dim), np.float32)
            )
            self.index.rebuild(ids, vectors)
            self._by_id = {r.id: (r.person_id, r.name) for r in rows}
            self._by_person = {r.person_id: r.id for r in rows}
            return len(rows)

    # ---- writes ----

    def enroll(
        self,
        person_id: str | None,
        name: str,
        crop_png: bytes,
        crop_size: tuple[int, int],
        face_meta: dict,
        photo_sha256: str,
        embedding: np.ndarray,
        replace: bool = False,
    ) -> tuple[PersonRecord, bool]:
        """Store a person with their reference crop and embedding; returns (record, replaced)."""
        vector = np.ascontiguousarray(embedding, dtype=np.float32).reshape(self.index.dim)
        with self._write, self.session_factory() as s:
            pid = person_id or uuid.uuid4().hex
            person = s.scalar(
                select(Person).where(Person.person_id == pid).options(selectinload(Person.embeddings))
            )
            replaced = person is not None
            old_ids: list[int] = []
            if person is not None:
                if not replace:
                    raise AlreadyEnrolled(
                        f"person {pid} is already enrolled; set replace=true to replace the reference",
                        person_id=pid,
                    )
                old_ids = [e.id for e in person.embeddings if e.model_version == self.model_version]
                for e in list(person.embeddings):
                    s.delete(e)
                if person.crop is not None:
                    s.delete(person.crop)
                s.flush()
                person.name = name
                person.updated_at = utcnow()
            else:
                person = Person(person_id=pid, name=name)
                s.add(person)
                s.flush()
            s.add(
                ReferenceCrop(
                    person_pk=person.id,
                    image_png=crop_png,
                    width=crop_size[0],
                    height=crop_size[1],
                    meta=face_meta,
                    photo_sha256=photo_sha256,
                )
            )
            emb = Embedding(person_pk=person.id, model_version=self.model_version, vector=vector.tobytes())
            s.add(emb)
            s.add(ChangeLog(op="upsert", person_id=pid))
            s.flush()
            s.refresh(person, ["embeddings"])
            record = _record(person)
            self._apply(old_ids, [(emb.id, vector)], pid, name)
            try:
                s.commit()
            except Exception:
                self._apply([emb.id], [], pid, name)
                self._restore(s, old_ids)
                raise
            return record, replaced

    def delete(self, person_id: str) -> None:
        """Remove the person, the crop, every embedding (all model versions) and the index entries."""
        with self._write, self.session_factory() as s:
            person = self._person(s, person_id)
            ids = [e.id for e in person.embeddings if e.model_version == self.model_version]
            s.delete(person)
            s.add(ChangeLog(op="delete", person_id=person_id))
            s.flush()
            self._apply(ids, [], person_id, None)
            try:
                s.commit()
            except Exception:
                self._restore(s, ids)
                raise

    def _apply(
        self, remove: list[int], add: list[tuple[int, np.ndarray]], pid: str, name: str | None
    ) -> None:
        if remove:
            self.index.remove(remove)
            for i in remove:
                self._by_id.pop(i, None)
            if self._by_person.get(pid) in remove:
                del self._by_person[pid]
        if add:
            self.index.add([i for i, _ in add], np.stack([v for _, v in add]))
            for i, _ in add:
                self._by_id[i] = (pid, name or pid)
                self._by_person[pid] = i

    def _restore(self, s: Session, ids: list[int]) -> None:
        """After a failed commit, put back index entries that had been removed."""
        s.rollback()
        if not ids:
            return
        rows = s.execute(
            select(Embedding.id, Embedding.vector, Person.person_id, Person.name)
            .join(Person, Person.id == Embedding.person_pk)
            .where(Embedding.id.in_(ids))
        ).all()
        for r in rows:
            self._apply([], [(r.id, np.frombuffer(r.vector, np.float32))], r.person_id, r.name)

    # ---- reads ----

    def _person(self, s: Session, person_id: str) -> Person:
        person = s.scalar(
            select(Person)
            .where(Person.person_id == person_id)
            .options(selectinload(Person.embeddings), selectinload(Person.crop))
        )
        if person is None:
            raise PersonNotFound(f"no person {person_id!r} is enrolled", person_id=person_id)
        return person

    def get(self, person_id: str) -> PersonRecord:
        with self.session_factory() as s:
            return _record(self._person(s, person_id))

    def list(self, offset: int, limit: int, query: str | None) -> tuple[list[PersonRecord], int]:
        with self.session_factory() as s:
            stmt = select(Person)
            if query:
                like = f"%{query.lower()}%"
                stmt = stmt.where(
                    or_(func.lower(Person.name).like(like), func.lower(Person.person_id).like(like))
                )
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            people = s.scalars(
                stmt.options(selectinload(Person.embeddings))
                .order_by(Person.created_at, Person.person_id)
                .offset(offset)
                .limit(limit)
            ).all()
            return [_record(p) for p in people], int(total)

    def crop(self, person_id: str) -> bytes:
        with self.session_factory() as s:
            person = self._person(s, person_id)
            if person.crop is None:
                raise PersonNotFound(f"person {person_id!r} has no reference crop", person_id=person_id)
            return person.crop.image_png

    def export(self, person_id: str) -> dict:
        """Everything stored about a person."""
        with self.session_factory() as s:
            p = self._person(s, person_id)
            crop = p.crop
            out = {
                "person": {
                    "person_id": p.person_id,
                    "name": p.name,
                    "created_at": p.created_at.isoformat(),
                    "updated_at": p.updated_at.isoformat(),
                },
                "reference_crop": None
                if crop is None
                else {
                    "png_base64": base64.b64encode(crop.image_png).decode(),
                    "width": crop.width,
                    "height": crop.height,
                    "meta": crop.meta,
                    "photo_sha256": crop.photo_sha256,
                    "created_at": crop.created_at.isoformat(),
                },
                "embeddings": [
                    {
                        "model_version": e.model_version,
                        "vector": np.frombuffer(e.vector, np.float32).round(6).tolist(),
                        "created_at": e.created_at.isoformat(),
                    }
                    for e in p.embeddings
                ],
            }
        out["audit"] = rows_about(self.session_factory, person_id)
        return out

    def embedding_of(self, person_id: str) -> np.ndarray:
        eid = self._by_person.get(person_id)
        if eid is None:
            raise PersonNotFound(f"no person {person_id!r} is enrolled", person_id=person_id)
        with self.session_factory() as s:
            vec = s.scalar(select(Embedding.vector).where(Embedding.id == eid))
        if vec is None:
            raise PersonNotFound(f"no person {person_id!r} is enrolled", person_id=person_id)
        return np.frombuffer(vec, np.float32)

    def search(self, vector: np.ndarray, k: int) -> list[Candidate]:
        sims, ids = self.index.search(np.asarray(vector, np.float32).reshape(1, -1), k)
        out = []
        for sim, i in zip(sims[0], ids[0]):
            who = self._by_id.get(int(i)) if i >= 0 else None
            if who is not None:
                out.append(Candidate(who[0], who[1], float(sim)))
        return out

    def size(self) -> int:
        return len(self._by_person)

    def consistency_check(self) -> bool:
        """True when the index holds exactly the database's embeddings for this model version."""
        with self._write, self.session_factory() as s:
            db_ids = set(s.scalars(select(Embedding.id).where(Embedding.model_version == self.model_version)))
            return db_ids == self.index.ids() == set(self._by_id)
