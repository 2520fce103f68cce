"""The gallery keeps the database and the FAISS index in step, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timezone

import numpy as np
import pytest
from sqlalchemy import select, text

from service.errors import AlreadyEnrolled, InvalidRequest, PersonNotFound
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.gallery.tables import ChangeLog, Embedding, Person
from service.index import FaceIndex
from tests.service.storage_helpers import (
    DIM,
    assert_index_equals_database,
    empty_gallery,
    enroll,
    make_enrolment,
    new_gallery,
    snapshot,
    unit,
)

DOOR = Caller(3, "door", frozenset({"verify"}))


@pytest.fixture
def gallery(database_url):
    with empty_gallery(database_url) as g:
        yield g


def engine_of(g: Gallery):
    return g.session_factory.kw["bind"]


def test_enroll_get_list_search(gallery):
    rng = np.random.default_rng(0)
    people = {pid: make_enrolment(rng, pid) for pid in ["p0", "p1", "p2", "p3", "p4"]}
    for e in people.values():
        record = enroll(gallery, e)
        assert (record.person_id, record.name, record.model_versions) == (e.person_id, e.name, ("m1",))
        assert record.crop_size == (12, 14) and not record.replaced
        assert record.created_at == record.updated_at and record.created_at.tzinfo is not None
    got = gallery.get("p2")
    assert got.name == "Name of p2" and got.created_at.utcoffset() == timezone.utc.utcoffset(None)
    assert gallery.crop("p2") == people["p2"].crop
    assert np.array_equal(gallery.embedding_of("p1"), people["p1"].vector)
    hits = gallery.search(people["p3"].vector, 10)
    assert hits[0].person_id == "p3" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 5 and [h.similarity for h in hits] == sorted(
        (h.similarity for h in hits), reverse=True
    )
    assert gallery.size() == 5
    generated = enroll(gallery, make_enrolment(rng, None))
    assert len(generated.person_id) == 32 and gallery.get(generated.person_id).name
    assert_index_equals_database(gallery)


def test_list_paginates_in_creation_order_and_filters(gallery):
    rng = np.random.default_rng(1)
    names = ["Ada Lovelace", "alan turing", "Grace 100%", "Edsger_W", "Barbara"]
    for i, name in enumerate(names):
        enroll(gallery, make_enrolment(rng, f"id-{i}", name))
    page, total = gallery.page(0, 2, None)
    assert total == 5 and [p.person_id for p in page] == ["id-0", "id-1"]
    page, total = gallery.page(2, 2, None)
    assert [p.person_id for p in page] == ["id-2", "id-3"]
    assert [p.person_id for p in gallery.page(4, 10, None)[0]] == ["id-4"]
    assert gallery.page(10, 10, None) == ([], 5)
    assert {p.name for p in gallery.page(0, 10, "A")[0]} == {
        "Ada Lovelace",
        "alan turing",
        "Grace 100%",
        "Barbara",
    }
    assert [p.person_id for p in gallery.page(0, 10, "ID-3")[0]] == ["id-3"]
    assert [p.name for p in gallery.page(0, 10, "0%")[0]] == ["Grace 100%"]  # % is literal
    assert [p.name for p in gallery.page(0, 10, "r_w")[0]] == ["Edsger_W"]  # _ is literal
    assert gallery.page(0, 10, "e_g")[1] == 0
    with pytest.raises(ValueError):
        gallery.page(-1, 10, None)


def test_search_returns_one_entry_per_person_and_handles_small_galleries(gallery):
    rng = np.random.default_rng(2)
    assert gallery.search(unit(rng), 3) == []
    e = make_enrolment(rng, "only")
    enroll(gallery, e)
    hits = gallery.search(e.vector, 5)
    assert [h.person_id for h in hits] == ["only"]
    with pytest.raises(ValueError):
        gallery.search(e.vector, 0)


def test_already_enrolled_and_invalid_input_change_nothing(gallery):
    rng = np.random.default_rng(3)
    first = make_enrolment(rng, "a")
    enroll(gallery, first)
    engine = engine_of(gallery)
    before = (snapshot(engine), gallery.index.ids())
    with pytest.raises(AlreadyEnrolled):
        enroll(gallery, make_enrolment(rng, "a"))
    e = make_enrolment(rng, "b")
    bad_calls = [
        (ValueError, dict(embedding=np.ones(DIM + 1, np.float32))),
        (ValueError, dict(embedding=np.full(DIM, np.nan, np.float32))),
        (ValueError, dict(crop_png=b"GIF89a not a png")),
        (ValueError, dict(face_meta={"x": np.float32(1.0)})),
        (ValueError, dict(photo_sha256="not a digest")),
        (InvalidRequest, dict(person_id="x" * 129)),
        (InvalidRequest, dict(person_id="nul\x00id")),
        (InvalidRequest, dict(name="")),
        (InvalidRequest, dict(name="nul\x00name")),
    ]
    for error, change in bad_calls:
        args = dict(
            person_id="b",
            name=e.name,
            crop_png=e.crop,
            face_meta=e.meta,
            photo_sha256=e.sha,
            embedding=e.vector,
        )
        with pytest.raises(error):
            gallery.enroll(**{**args, **change})
    for nobody in ("nobody", "nul\x00", "x" * 500, ""):  # never a database error
        for call in (gallery.delete, gallery.get, gallery.crop, gallery.export, gallery.embedding_of):
            with pytest.raises(PersonNotFound):
                call(nobody)
    with pytest.raises(InvalidRequest):
        gallery.page(0, 10, "nul\x00")
    assert (snapshot(engine), gallery.index.ids()) == before
    assert_index_equals_database(gallery)


def test_replace_swaps_crop_and_embedding(gallery):
    rng = np.random.default_rng(4)
    old, new = make_enrolment(rng, "a", "Old Name"), make_enrolment(rng, "a", "New Name")
    first = enroll(gallery, old)
    old_ids = gallery.index.ids()
    with gallery.session_factory.begin() as s:  # an embedding by another model version, of the old crop
        s.add(
            Embedding(person_pk=s.scalar(select(Person.id)), model_version="m0", vector=unit(rng).tobytes())
        )
    record = enroll(gallery, new, replace=True)
    assert record.replaced and record.name == "New Name" and record.model_versions == ("m1",)
    assert record.created_at == first.created_at and record.updated_at > first.updated_at
    assert gallery.crop("a") == new.crop and np.array_equal(gallery.embedding_of("a"), new.vector)
    assert gallery.index.ids().isdisjoint(old_ids) and len(gallery.index) == 1
    assert gallery.search(old.vector, 1)[0].similarity == pytest.approx(
        float(old.vector @ new.vector), abs=1e-5
    )
    exported = gallery.export("a")
    assert exported["reference_crop"]["photo_sha256"] == new.sha and len(exported["embeddings"]) == 1
    with gallery.session_factory() as s:
        assert s.scalar(text("SELECT count(*) FROM reference_crops")) == 1
        assert [c.op for c in s.scalars(select(ChangeLog).order_by(ChangeLog.id))] == ["upsert", "upsert"]
    replaced_fresh = enroll(gallery, make_enrolment(rng, "fresh"), replace=True)  # replace=True, new person
    assert not replaced_fresh.replaced
    assert_index_equals_database(gallery)


def test_delete_leaves_nothing_behind(gallery):
    rng = np.random.default_rng(5)
    gone, kept = make_enrolment(rng, "gone"), make_enrolment(rng, "kept")
    enroll(gallery, gone)
    enroll(gallery, kept)
    with gallery.session_factory.begin() as s:
        pk = s.scalar(select(Person.id).where(Person.person_id == "gone"))
        other_version = unit(rng)
        s.add(Embedding(person_pk=pk, model_version="m0", vector=other_version.tobytes()))
    audit.record(
        gallery.session_factory,
        audit.row(
            DOOR,
            "verify",
            person_id="gone",
            result="match",
            score=0.9,
            model_version="m1",
            detail={"threshold": 0.5},
        ),
    )
    gallery.delete("gone")
    for call in (gallery.get, gallery.crop, gallery.export, gallery.embedding_of, gallery.delete):
        with pytest.raises(PersonNotFound):
            call("gone")
    assert all(c.person_id != "gone" for c in gallery.search(gone.vector, 5))
    secrets = [gone.crop, gone.vector.tobytes(), other_version.tobytes(), gone.sha, gone.name]
    for table, rows in snapshot(engine_of(gallery)).items():
        for row in rows:
            for value in row:
                assert not any(isinstance(value, type(x)) and x in value for x in secrets), (table, row)
                if value == "gone":  # the person_id survives only as plain text in the trails
                    assert table in ("audit", "change_log"), (table, row)
    with gallery.session_factory() as s:
        assert s.scalar(text("SELECT count(*) FROM people")) == 1
        assert s.scalar(text("SELECT count(*) FROM reference_crops")) == 1
        assert s.scalar(text("SELECT count(*) FROM embeddings")) == 1
        assert [(c.op, c.person_id) for c in s.scalars(select(ChangeLog).order_by(ChangeLog.id))] == [
            ("upsert", "gone"),
            ("upsert", "kept"),
            ("delete", "gone"),
        ]
    assert gallery.size() == 1
    assert_index_equals_database(gallery)


def test_restart_loads_the_same_index(gallery, database_url):
    rng = np.random.default_rng(6)
    people = [make_enrolment(rng, f"p{i}") for i in range(12)]
    for e in people:
        enroll(gallery, e)
    gallery.delete("p4")
    engine = make_engine(database_url)  # a new process: new engine, new index
    again = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
    assert again.load() == 11 and again.index.ids() == gallery.index.ids()
    for e in people:
        if e.person_id != "p4":
            assert np.array_equal(again.embedding_of(e.person_id), e.vector)
            assert again.search(e.vector, 1)[0].person_id == e.person_id
    assert_index_equals_database(again)
    assert new_gallery(gallery, "m2").load() == 0  # embeddings are per model version
    engine.dispose()


def test_export_holds_everything_stored(gallery):
    rng = np.random.default_rng(7)
    e = make_enrolment(rng, "x")
    enroll(gallery, e)
    audit.record(
        gallery.session_factory,
        audit.row(
            DOOR,
            "verify",
            person_id="x",
            result="match",
            score=0.93,
            model_version="m1",
            detail={"threshold": 0.6},
        ),
    )
    out = gallery.export("x")
    assert out["person"]["person_id"] == "x" and out["person"]["name"] == e.name
    crop = out["reference_crop"]
    assert (
        crop["meta"] == e.meta
        and crop["photo_sha256"] == e.sha
        and (crop["width"], crop["height"]) == (12, 14)
    )
    import base64

    assert base64.b64decode(crop["png_base64"]) == e.crop
    assert np.array_equal(np.asarray(out["embeddings"][0]["vector"], np.float32), e.vector)
    assert out["embeddings"][0]["model_version"] == "m1"
    assert [(a["action"], a["result"], a["score"]) for a in out["audit"]] == [("verify", "match", 0.93)]
    assert [c["op"] for c in out["changes"]] == ["upsert"]


def test_audit_rows_refuse_unknown_actions_and_biometric_data(gallery):
    with pytest.raises(ValueError, match="valid"):
        audit.row(DOOR, "peek")
    with pytest.raises(ValueError, match="biometric"):
        audit.row(DOOR, "verify", person_id="a", detail={"x": {"embedding": [1]}})
    audit.record(gallery.session_factory, audit.row(DOOR, "key_create"))
    with gallery.session_factory() as s:
        assert s.scalar(text("SELECT count(*) FROM audit")) == 1
