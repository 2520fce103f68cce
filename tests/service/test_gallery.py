"""The gallery keeps the database and the FAISS index in step, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from sqlalchemy import func, inspect, select, text

from service.errors import AlreadyEnrolled, PersonNotFound
from service.gallery.db import downgrade, make_engine, migrate, session_factory
from service.gallery.gallery import Gallery
from service.gallery.tables import ChangeLog, Embedding, Person, ReferenceCrop
from service.index import FaceIndex

DIM = 16


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def gallery(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    g = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
    g.load()
    yield g
    engine.dispose()


def enroll(g: Gallery, pid: str | None, vec: np.ndarray, replace: bool = False):
    return g.enroll(pid, f"name {pid}", b"png", (4, 4), {"face": {}}, "0" * 64, vec, replace=replace)


def counts(g: Gallery) -> dict[str, int]:
    with g.session_factory() as s:
        return {
            t.__tablename__: s.scalar(select(func.count()).select_from(t))
            for t in (Person, ReferenceCrop, Embedding)
        }


def test_enroll_search_get_list(gallery):
    rng = np.random.default_rng(0)
    vecs = {f"p{i}": unit(rng) for i in range(5)}
    for pid, v in vecs.items():
        record, replaced = enroll(gallery, pid, v)
        assert record.person_id == pid and record.model_versions == ("m1",) and not replaced
    hit = gallery.search(vecs["p3"], 2)
    assert hit[0].person_id == "p3" and hit[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert gallery.get("p2").name == "name p2"
    page, total = gallery.list(1, 2, None)
    assert total == 5 and [p.person_id for p in page] == ["p1", "p2"]
    assert gallery.list(0, 10, "P4")[1] == 1
    assert np.allclose(gallery.embedding_of("p1"), vecs["p1"])
    generated, _ = enroll(gallery, None, unit(rng))
    assert len(generated.person_id) == 32
    assert gallery.consistency_check()


def test_already_enrolled_changes_nothing_and_replace_swaps(gallery):
    rng = np.random.default_rng(1)
    enroll(gallery, "a", unit(rng))
    before = (counts(gallery), gallery.index.ids())
    with pytest.raises(AlreadyEnrolled):
        enroll(gallery, "a", unit(rng))
    assert (counts(gallery), gallery.index.ids()) == before
    new = unit(rng)
    _, replaced = enroll(gallery, "a", new, replace=True)
    assert replaced and counts(gallery) == {"people": 1, "reference_crops": 1, "embeddings": 1}
    assert np.allclose(gallery.embedding_of("a"), new) and gallery.consistency_check()


def test_delete_leaves_nothing(gallery):
    rng = np.random.default_rng(2)
    enroll(gallery, "a", unit(rng))
    enroll(gallery, "b", unit(rng))
    gallery.delete("a")
    with pytest.raises(PersonNotFound):
        gallery.get("a")
    with pytest.raises(PersonNotFound):
        gallery.delete("a")
    assert counts(gallery) == {"people": 1, "reference_crops": 1, "embeddings": 1}
    assert all(c.person_id != "a" for c in gallery.search(unit(rng), 5))
    with gallery.session_factory() as s:
        assert [c.op for c in s.scalars(select(ChangeLog).order_by(ChangeLog.id))] == [
            "upsert",
            "upsert",
            "delete",
        ]
    assert gallery.consistency_check()


def test_restart_loads_the_same_index(gallery):
    rng = np.random.default_rng(3)
    for i in range(10):
        enroll(gallery, f"p{i}", unit(rng))
    gallery.delete("p4")
    again = Gallery(gallery.session_factory, FaceIndex(DIM), "m1")
    assert again.load() == 9
    assert again.index.ids() == gallery.index.ids() and again.consistency_check()
    other_model = Gallery(gallery.session_factory, FaceIndex(DIM), "m2")
    assert other_model.load() == 0


def test_concurrent_enroll_search_delete_keep_index_equal_to_database(gallery):
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        pick = random.Random(seed)
        try:
            for i in range(40):
                op = pick.random()
                pid = f"w{seed}-{pick.randrange(12)}"
                if op < 0.45:
                    try:
                        enroll(gallery, pid, unit(rng), replace=pick.random() < 0.3)
                    except AlreadyEnrolled:
                        pass
                elif op < 0.75:
                    gallery.search(unit(rng), 5)
                    try:
                        gallery.embedding_of(pid)
                    except PersonNotFound:
                        pass
                else:
                    try:
                        gallery.delete(pid)
                    except PersonNotFound:
                        pass
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert gallery.consistency_check()
    with gallery.session_factory() as s:
        db_people = set(s.scalars(select(Person.person_id)))
    assert db_people == set(gallery._by_person)
    assert gallery.size() == len(db_people)


def test_export_holds_everything(gallery):
    v = unit(np.random.default_rng(4))
    enroll(gallery, "x", v)
    out = gallery.export("x")
    assert out["person"]["person_id"] == "x" and out["reference_crop"]["png_base64"]
    assert np.allclose(out["embeddings"][0]["vector"], v, atol=1e-5)


def test_migrations_upgrade_and_downgrade(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent
    tables = set(inspect(engine).get_table_names())
    assert {"people", "reference_crops", "embeddings", "api_keys", "audit", "change_log"} <= tables
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    engine.dispose()
