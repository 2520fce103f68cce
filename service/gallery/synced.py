"""A gallery that follows changes made elsewhere and can adopt a new model version.

``SyncedGallery`` adds to ``Gallery``:

* ``refresh(person_ids)``: bring the index in step with the database for these people, after
  another replica, another model version's gallery or a CLI changed them. A person gone from the
  database leaves the index; a changed embedding is re-indexed; a person whose reference crop has
  no embedding for this version yet is embedded from the crop (``reembed``, the model's
  ``CropEmbedder``) and the embedding stored, tagged with the version. Crops are embedded outside
  any database transaction, so the store step re-checks, inside its write transaction, that the
  crop embedded is still the person's stored crop (``CropKey``); a crop replaced meanwhile
  (``replace=true`` during a swap) is not stored but embedded again from the new crop.
* ``backfill()``: the same for every stored crop lacking an embedding for this version (a model
  version being adopted embeds the whole gallery this way, in the background).
* listeners, told of each enrolment and deletion made through this gallery after its commit
  (the model lifecycle uses them to keep a version being adopted in step without waiting).
* the crop's alignment stored in the crop's meta at enrolment (this model's size and template
  for a ``chip``, the canvas's frame for a ``canvas``), so that another model can realign the
  crop (``service.crop_embed``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.collection_index import DEFAULT_ONLY, memberships
from service.crop_embed import StoredCrop, canvas_alignment_meta
from service.gallery import cipher, membership, status
from service.gallery.db import write_session
from service.gallery.gallery import Gallery
from service.gallery.records import PersonRecord
from service.gallery.tables import AuditEvent, Embedding, Person, ReferenceCrop, as_utc
from service.index import FaceIndex

log = logging.getLogger(__name__)

CropEmbed = Callable[[list[StoredCrop]], np.ndarray]
Listener = Callable[[str, "SyncedGallery"], None]
StoreItem = tuple[str, "CropKey | None", np.ndarray]  # (person_id, key of the crop embedded, vector)
# Rounds of embed-then-store in one refresh: a crop replaced between the two is embedded again.
MAX_ROUNDS = 3


@dataclass(frozen=True)
class CropKey:
    """Which stored crop an embedding was computed from: every enrolment (replacing or not)
    writes the crop with a new ``created_at``."""

    photo_sha256: str
    created_at: str

    @classmethod
    def of(cls, photo_sha256: str, created_at: datetime) -> CropKey:
        return cls(photo_sha256, as_utc(created_at).isoformat())


@dataclass(frozen=True)
class PersonState:
    """What the database holds about one person for one model version."""

    person_id: str
    name: str
    embedding: tuple[int, np.ndarray] | None  # (embedding id, vector)
    crop: StoredCrop | None
    crop_key: CropKey | None = None
    collections: frozenset[str] = DEFAULT_ONLY


def person_states(s: Session, version: str, person_ids: list[str]) -> dict[str, PersonState]:
    """The people among ``person_ids`` that exist, with their embedding for ``version`` and crop."""
    people = s.execute(
        select(Person.id, Person.person_id, Person.name).where(Person.person_id.in_(person_ids))
    ).all()
    pks = [p.id for p in people]
    opened = cipher.of(s)
    embeddings: dict[int, tuple[int, np.ndarray]] = {}
    for row in s.execute(
        select(Embedding.id, Embedding.person_pk, Embedding.vector)
        .where(Embedding.person_pk.in_(pks), Embedding.model_version == version)
        .order_by(Embedding.id.desc())
    ):
        raw = opened.open_vector(row.vector, row.person_pk, version)
        embeddings[row.person_pk] = (int(row.id), np.frombuffer(raw, np.float32).copy())
    crops: dict[int, tuple[StoredCrop, CropKey]] = {
        row.person_pk: (
            StoredCrop(opened.open_crop(row.image_png, row.person_pk), dict(row.meta or {}), row.kind),
            CropKey.of(row.photo_sha256, row.created_at),
        )
        for row in s.execute(
            select(
                ReferenceCrop.person_pk,
                ReferenceCrop.image_png,
                ReferenceCrop.meta,
                ReferenceCrop.photo_sha256,
                ReferenceCrop.created_at,
                ReferenceCrop.kind,
            ).where(ReferenceCrop.person_pk.in_(pks))
        )
    }
    groups = membership.read(s, pks)
    out: dict[str, PersonState] = {}
    for p in people:
        crop, key = crops.get(p.id, (None, None))
        out[p.person_id] = PersonState(
            p.person_id, p.name, embeddings.get(p.id), crop, key, memberships(groups.get(p.id))
        )
    return out


def crop_keys(s: Session, pks: list[int]) -> dict[int, CropKey]:
    """The key of each of these people's stored crop, read now."""
    rows = s.execute(
        select(ReferenceCrop.person_pk, ReferenceCrop.photo_sha256, ReferenceCrop.created_at).where(
            ReferenceCrop.person_pk.in_(pks)
        )
    )
    return {r.person_pk: CropKey.of(r.photo_sha256, r.created_at) for r in rows}


def people_without_embedding(s: Session, version: str) -> list[str]:
    """Person ids with a reference crop but no embedding for ``version``."""
    have = select(Embedding.person_pk).where(Embedding.model_version == version)
    stmt = (
        select(Person.person_id)
        .join(ReferenceCrop, ReferenceCrop.person_pk == Person.id)
        .where(Person.id.not_in(have))
        .order_by(Person.id)
    )
    return list(s.scalars(stmt))


class SyncedGallery(Gallery):
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        index: FaceIndex,
        model_version: str,
        reembed: CropEmbed | None = None,
        alignment: dict | None = None,
    ) -> None:
        super().__init__(session_factory, index, model_version)
        self.reembed = reembed
        self.alignment = alignment
        self._listeners: list[Listener] = []

    # ---- writes made here: remember the crop's alignment, tell the listeners ----

    def enroll(self, *args: Any, **kwargs: Any):
        meta = kwargs.get("face_meta")
        if isinstance(meta, dict):
            frame = canvas_alignment_meta() if kwargs.get("crop_kind") == "canvas" else self.alignment
            if frame:
                kwargs["face_meta"] = {**meta, "alignment": frame}
        result = super().enroll(*args, **kwargs)
        record = result[0] if isinstance(result, tuple) else result
        self._notify(record.person_id)
        return result

    def delete(self, person_id: str, audit: AuditEvent | None = None) -> None:
        super().delete(person_id, audit)
        self._notify(person_id)

    def set_status(
        self, person_id: str, change: status.StatusChange, audit: AuditEvent | None = None
    ) -> PersonRecord:
        record = super().set_status(person_id, change, audit)
        self._notify(person_id)
        return record

    def edit_collections(
        self,
        person_id: str,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        audit: AuditEvent | None = None,
    ) -> PersonRecord:
        record = super().edit_collections(person_id, add, remove, audit)
        self._notify(person_id)
        return record

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, person_id: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(person_id, self)
            except Exception:  # the write has committed: a listener's failure must not undo the answer
                log.exception("gallery listener failed for %s", person_id)

    # ---- changes made elsewhere ----

    def refresh(self, person_ids: Iterable[str]) -> int:
        """Bring the index in step with the database for these people; returns embeddings stored."""
        pids = sorted(set(person_ids))
        if not pids:
            return 0
        stored = 0
        with self._write:
            with self.session_factory() as s:
                states = person_states(s, self.model_version, pids)
            for _ in range(MAX_ROUNDS):
                missing = [st for st in states.values() if st.embedding is None and st.crop is not None]
                if not missing or self.reembed is None:
                    break
                vectors = self._embed(missing)
                items = [(st.person_id, st.crop_key, v) for st, v in zip(missing, vectors) if v is not None]
                added, stale = self._store(items)
                stored += added
                with self.session_factory() as s:
                    states = person_states(s, self.model_version, pids)
                if not stale:
                    break
                log.info(
                    "model %s: %d reference crops were replaced while being embedded; embedding the new ones",
                    self.model_version,
                    stale,
                )
            for pid in pids:
                self._reconcile(pid, states.get(pid))
            with self.session_factory() as s:  # suspension and expiry (service.gallery.status)
                self.availability.update_many(pids, status.read(s, pids))
        return stored

    def _embed(self, states: list[PersonState]) -> list[np.ndarray | None]:
        """Embeddings of the states' crops; a crop that cannot be embedded is logged and skipped."""
        if self.reembed is None:
            return [None] * len(states)
        crops = [st.crop for st in states if st.crop is not None]
        try:
            return list(self.reembed(crops))
        except Exception:
            log.warning("embedding %d stored crops failed; trying them one by one", len(crops), exc_info=True)
        out: list[np.ndarray | None] = []
        for st, crop in zip(states, crops):
            try:
                out.append(self.reembed([crop])[0])
            except Exception as exc:
                log.error(
                    "the stored crop of %s cannot be embedded by %s: %s",
                    st.person_id,
                    self.model_version,
                    exc,
                )
                out.append(None)
        return out

    def _store(self, items: list[StoreItem]) -> tuple[int, int]:
        """Store these embeddings for this version in one write transaction (one by one if that
        fails), skipping people who are gone or already have one, and crops replaced since they
        were read; returns (stored, skipped because the crop was replaced)."""
        if not items:
            return 0, 0
        try:
            return self._store_batch(items)
        except (IntegrityError, OperationalError):  # a concurrent replica or deletion: go one by one
            log.debug(
                "storing %d embeddings together failed; storing them one by one", len(items), exc_info=True
            )
        stored = stale = 0
        for item in items:
            for attempt in range(3):
                try:
                    added, skipped = self._store_batch([item])
                    stored, stale = stored + added, stale + skipped
                    break
                except IntegrityError:  # stored by another replica meanwhile, or the person was deleted
                    break
                except OperationalError:
                    log.warning(
                        "storing %s's embedding failed (attempt %d)", item[0], attempt + 1, exc_info=True
                    )
        return stored, stale

    def _store_batch(self, items: list[StoreItem]) -> tuple[int, int]:
        with write_session(self.session_factory) as s:
            pks = dict(
                s.execute(
                    select(Person.person_id, Person.id).where(Person.person_id.in_([p for p, _, _ in items]))
                ).all()
            )
            have = set(
                s.scalars(
                    select(Embedding.person_pk).where(
                        Embedding.person_pk.in_(list(pks.values())),
                        Embedding.model_version == self.model_version,
                    )
                )
            )
            keys = crop_keys(s, list(pks.values()))
            todo: list[tuple[int, np.ndarray]] = []
            stale = 0
            for pid, key, vector in items:
                pk = pks.get(pid)
                if pk is None or pk in have:
                    continue
                if keys.get(pk) != key:  # the crop was replaced (or removed) after it was read
                    stale += 1
                    continue
                todo.append((pk, vector))
            sealer = cipher.of(s)
            for pk, vector in todo:
                vec = sealer.seal_vector(np.asarray(vector, np.float32).tobytes(), pk, self.model_version)
                s.add(Embedding(person_pk=pk, model_version=self.model_version, vector=vec))
            s.commit()
            return len(todo), stale

    def _reconcile(self, pid: str, state: PersonState | None) -> None:
        current = self._by_person.get(pid)
        wanted = state.embedding if state is not None else None
        if wanted is not None and current == wanted[0] and state is not None:
            self._by_id[current] = (pid, state.name)
            if self.index.collections_of(current) != state.collections:
                self.index.move(current, state.collections)
            return
        if current is not None:
            self.index.remove([current])
            self._by_id.pop(current, None)
            self._by_person.pop(pid, None)
        if wanted is not None and state is not None:
            eid, vector = wanted
            self.index.add([eid], vector[None, :], [state.collections])
            self._by_id[eid] = (pid, state.name)
            self._by_person[pid] = eid

    def backfill(self, batch: int = 64, progress: Callable[[int, int], None] | None = None) -> int:
        """Embed every stored crop lacking an embedding for this version; returns how many were stored."""
        if self.reembed is None:
            return 0
        with self.session_factory() as s:
            todo = people_without_embedding(s, self.model_version)
        stored = 0
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            stored += self.refresh(chunk)
            if progress is not None:
                progress(i + len(chunk), len(todo))
        if todo:
            log.info("model %s: %d stored crops embedded", self.model_version, stored)
        return stored
