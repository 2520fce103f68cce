"""enroll-dir's batched writes (``service.gallery.bulk.enroll_batch``), on SQLite and PostgreSQL.

Synthetic people (``storage_helpers``), no models or photos needed: a batch stores exactly what
``Gallery.enroll`` stores person by person, in one transaction, with the index updated once.
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from service.errors import InvalidRequest
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.bulk import NewPerson, enroll_batch
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import png_size
from service.gallery.tables import AuditEvent, ChangeLog
from tests.service.storage_helpers import (
    DIM,
    Enrolment,
    assert_index_equals_database,
    empty_gallery,
    make_enrolment,
    new_gallery,
    replica_pair,
    snapshot,
    unit,
)

CLI = Caller(None, "cli enroll-dir", frozenset({"admin"}))


@pytest.fixture
def gallery(database_url):
    with empty_gallery(database_url) as g:
        yield g


def _new(e: Enrolment, person_id: str | None = None, **changes) -> NewPerson:
    fields = {
        "person_id": person_id or str(e.person_id),
        "name": e.name,
        "crop_png": e.crop,
        "crop_size": png_size(e.crop),
        "face_meta": e.meta,
        "photo_sha256": e.sha,
        "embedding": e.vector,
        "audit": audit.row(CLI, "enroll", model_version="m1", detail={"quality": {"sharpness": 40.0}}),
    }
    return NewPerson(**{**fields, **changes})


def _without_ids(exported: dict) -> dict:
    """An export with what differs between two people stored alike left out (ids, times)."""
    out = {
        "person": {
            k: v for k, v in exported["person"].items() if k not in ("person_id", "created_at", "updated_at")
        },
        "reference_crop": {k: v for k, v in exported["reference_crop"].items() if k != "created_at"},
        "embeddings": [
            {k: v for k, v in e.items() if k in ("model_version", "vector")} for e in exported["embeddings"]
        ],
    }
    return out


def test_a_batch_stores_what_enroll_stores_one_by_one(gallery):
    rng = np.random.default_rng(0)
    people = [make_enrolment(rng, f"p{i}") for i in range(5)]
    for e in people:
        gallery.enroll(
            f"one-{e.person_id}",
            e.name,
            e.crop,
            e.meta,
            e.sha,
            e.vector,
            crop_kind="canvas",
            audit=audit.row(CLI, "enroll", model_version="m1", detail={"quality": {"sharpness": 40.0}}),
        )
    result = enroll_batch(gallery, [_new(e, f"batch-{e.person_id}") for e in people])
    assert result.stored == [f"batch-{e.person_id}" for e in people]
    assert not result.replaced and not result.already_enrolled
    for e in people:
        one, batch = gallery.export(f"one-{e.person_id}"), gallery.export(f"batch-{e.person_id}")
        assert _without_ids(one) == _without_ids(batch)
        assert [(a["action"], a["result"], a["detail"]) for a in one["audit"]] == [
            (a["action"], a["result"], a["detail"]) for a in batch["audit"]
        ]
        assert np.array_equal(gallery.embedding_of(f"batch-{e.person_id}"), e.vector)
        assert gallery.search(e.vector, 2)[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert gallery.size() == 10
    assert_index_equals_database(gallery)
    restarted = new_gallery(gallery)
    assert restarted.load() == 10
    assert_index_equals_database(restarted)


def test_people_already_enrolled_are_skipped_or_replaced(gallery):
    rng = np.random.default_rng(1)
    old = make_enrolment(rng, "a", "Old Name")
    enroll_batch(gallery, [_new(old, collections=("lobby",))])
    new, other = make_enrolment(rng, "a", "New Name"), make_enrolment(rng, "b")
    skipped = enroll_batch(gallery, [_new(new), _new(other)])
    assert skipped.already_enrolled == ["a"] and skipped.stored == ["b"]
    assert np.array_equal(gallery.embedding_of("a"), old.vector)

    replaced = enroll_batch(gallery, [_new(new)], replace=True)
    assert replaced.stored == replaced.replaced == ["a"]
    record = gallery.get("a")
    assert record.name == "New Name" and record.collections == ("lobby",)  # collections kept
    assert np.array_equal(gallery.embedding_of("a"), new.vector) and gallery.size() == 2
    assert gallery.search(new.vector, 1, ["lobby"])[0].person_id == "a"
    with gallery.session_factory() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.person_id == "a")))
        assert actions == ["enroll", "replace"]
        assert len(list(s.scalars(select(ChangeLog.id)))) == 3
    assert_index_equals_database(gallery)


def test_an_invalid_person_stores_nothing_of_the_batch(gallery):
    rng = np.random.default_rng(2)
    enroll_batch(gallery, [_new(make_enrolment(rng, "kept"))])
    engine = gallery.session_factory.kw["bind"]
    before = (snapshot(engine), gallery.index.ids())
    good = make_enrolment(rng, "good")
    bad = [
        _new(make_enrolment(rng, "bad"), embedding=np.ones(DIM + 1, np.float32)),
        _new(make_enrolment(rng, "bad"), photo_sha256="not a digest"),
        _new(make_enrolment(rng, "bad"), name=""),
        _new(make_enrolment(rng, "bad"), collections=("not a name!",)),
        _new(good),  # the same person twice in one batch
    ]
    for wrong in bad:
        with pytest.raises((ValueError, InvalidRequest)):
            enroll_batch(gallery, [_new(good), wrong])
    assert (snapshot(engine), gallery.index.ids()) == before
    assert_index_equals_database(gallery)


def test_a_synced_gallery_tells_its_listeners_and_replicas_follow(database_url):
    engine = make_engine(database_url)
    try:
        a, b, replicator = replica_pair(session_factory(engine))
        heard: list[str] = []
        a.add_listener(lambda pid, _g: heard.append(pid))
        rng = np.random.default_rng(3)
        people = [make_enrolment(rng, f"p{i}") for i in range(4)]
        enroll_batch(a, [_new(e) for e in people])
        assert heard == [e.person_id for e in people]
        assert a.get("p0") and a.export("p0")["reference_crop"]["meta"]["alignment"]  # the canvas frame
        replicator.poll_once()
        assert b.size() == 4
        for e in people:
            assert np.array_equal(b.embedding_of(str(e.person_id)), e.vector)
        probe = unit(rng)
        assert [c.person_id for c in a.search(probe, 4)] == [c.person_id for c in b.search(probe, 4)]
    finally:
        engine.dispose()
