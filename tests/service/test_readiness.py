"""Cheap readiness and the full consistency check (issue 14 item 4).

``/readyz`` judges the index from counts and change-log positions (``ReadinessProbe``); the
full comparison of every stored embedding id runs in the background (``ConsistencyWatch``) and
at ``GET /admin/consistency``, and is the ``facegate_index_consistent`` metric. Random unit
vectors through the gallery's storage layer; SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import text

from service.consistency import ConsistencyWatch, ReadinessProbe
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.gallery import Gallery
from service.index import FaceIndex
from service.metrics import Metrics
from service.replication import ChangeFeed, Replicator
from tests.service.storage_helpers import DIM, enroll, make_enrolment, new_gallery


def _gallery(database_url: str, people: int = 4, dim: int = DIM) -> Gallery:
    engine = make_engine(database_url)
    migrate(engine)
    g = Gallery(session_factory(engine), FaceIndex(dim), "v1")
    g.load()
    rng = np.random.default_rng(1)
    for i in range(people):
        e = make_enrolment(rng, f"P{i}")
        g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector[:dim] if dim <= DIM else e.vector)
    return g


def _plant_swapped_row(g: Gallery, person_id: str) -> None:
    """Replace the person's stored embedding row by an identical one with a new id, behind the
    gallery's back (no change log): the counts stay equal, the ids do not."""
    with g.session_factory.begin() as s:
        row = s.execute(
            text(
                "SELECT e.id, e.person_pk, e.vector, e.created_at FROM embeddings e "
                "JOIN people p ON p.id = e.person_pk WHERE p.person_id = :p AND e.model_version = 'v1'"
            ),
            {"p": person_id},
        ).one()
        s.execute(text("DELETE FROM embeddings WHERE id = :i"), {"i": row.id})
        s.execute(
            text(
                "INSERT INTO embeddings (id, person_pk, model_version, vector, created_at) "
                "VALUES (:i, :pk, 'v1', :v, :at)"
            ),
            {"i": row.id + 1000, "pk": row.person_pk, "v": row.vector, "at": row.created_at},
        )


def test_ready_when_in_step_and_not_when_the_index_misses_people(database_url):
    g = _gallery(database_url)
    probe = ReadinessProbe(ChangeFeed(g.session_factory))
    assert probe.index_ready(g)
    other = new_gallery(g)  # another process on the database, whose change this one has not read
    other.load()
    enroll(other, make_enrolment(np.random.default_rng(2), "NEW"))
    assert not probe.index_ready(g)  # 5 stored, 4 indexed
    g.load()
    assert probe.index_ready(g)
    other.load()
    other.delete("P0")
    assert not probe.index_ready(g)  # 4 stored, 5 indexed


def test_a_replica_catching_up_is_ready_until_the_replicator_has_read_the_log(database_url):
    g = _gallery(database_url)
    feed = ChangeFeed(g.session_factory)
    replicator = Replicator(feed, lambda _people: g.load(), 1.0, 0)
    replicator.position = feed.position()
    probe = ReadinessProbe(feed, replicator)
    other = new_gallery(g)
    other.load()
    enroll(other, make_enrolment(np.random.default_rng(3), "NEW"))
    assert probe.index_ready(g)  # the change is on its way: replication lag, not a broken index
    replicator.poll_once()
    assert probe.index_ready(g) and len(g.index) == 5
    replicator.interval = 0  # not following the log: the difference is the index's
    other.delete("P1")
    assert not probe.index_ready(g)


def test_readiness_does_not_read_every_id(database_url):
    """The probe's database work is the change log's newest id once the count is cached."""
    g = _gallery(database_url)
    probe = ReadinessProbe(ChangeFeed(g.session_factory))
    assert probe.index_ready(g)
    counted = []
    real = g.stored_count
    g.stored_count = lambda: counted.append(1) or real()  # type: ignore[method-assign]
    g.consistency_report = None  # type: ignore[assignment]  # the full scan is never called
    for _ in range(5):
        assert probe.index_ready(g)
    assert counted == []
    enroll(g, make_enrolment(np.random.default_rng(4), "LATER"))
    assert probe.index_ready(g) and counted == [1]  # the log moved: counted once more


def test_the_background_check_finds_a_planted_mismatch(database_url):
    g = _gallery(database_url)
    metrics = Metrics()
    watch = ConsistencyWatch(lambda: g, metrics, interval=0.05)
    first = watch.check()
    assert first.report.consistent and first.report.database == first.report.indexed == 4
    assert metrics.registry.get_sample_value("facegate_index_consistent") == 1
    eid = g._by_person["P2"]
    _plant_swapped_row(g, "P2")
    assert ReadinessProbe(ChangeFeed(g.session_factory)).index_ready(g)  # counts equal: cheap check passes
    watch.start()
    try:
        deadline = time.monotonic() + 10
        while watch.last is first or watch.last.report.consistent:
            assert time.monotonic() < deadline, "the background check did not run"
            time.sleep(0.02)
    finally:
        watch.stop()
    r = watch.last.report
    assert (r.missing, r.extra, r.misattributed) == ([eid + 1000], [eid], [])
    assert r.mismatched == 2 and not r.consistent
    assert metrics.registry.get_sample_value("facegate_index_consistent") == 0
    assert metrics.registry.get_sample_value("facegate_index_mismatched_embeddings") == 2
    g.load()
    assert watch.check().report.consistent
    assert metrics.registry.get_sample_value("facegate_index_consistent") == 1


def test_the_admin_endpoint_reports_the_mismatch_and_readyz_the_missing_people(make_client):
    client = make_client(sync_interval=0, consistency_interval=0)
    state = client.app.state.facegate
    g = state.recognizer.gallery
    rng = np.random.default_rng(5)
    for i in range(3):
        e = make_enrolment(rng, f"A{i}")
        v = rng.standard_normal(g.index.dim).astype(np.float32)
        g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, v / np.linalg.norm(v))
    state.replicator.poll_once()  # the replicator has read these (its re-read would mend the plant)
    ok = client.get("/admin/consistency", params={"fresh": "true"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["consistent"] and ok.json()["database"] == ok.json()["indexed"] == 3
    assert client.get("/readyz").status_code == 200
    eid = g._by_person["A1"]
    with g.session_factory.begin() as s:
        pk = s.execute(text("SELECT person_pk FROM embeddings WHERE id = :i"), {"i": eid}).scalar_one()
    _plant_swapped_row_any(g, eid, pk)
    body = client.get("/admin/consistency", params={"fresh": "true"}).json()
    assert not body["consistent"] and body["missing"] == 1 and body["extra"] == 1
    assert body["sample_missing"] == [eid + 1000] and body["sample_extra"] == [eid]
    assert "facegate_index_consistent 0.0" in client.get("/metrics").text
    assert client.get("/admin/consistency", headers={"Authorization": ""}).status_code == 401
    other = new_gallery(g)  # another replica (this one does not follow the log) deletes a person
    other.load()
    other.delete("A0")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["index"] is False


def _plant_swapped_row_any(g: Gallery, eid: int, pk: int) -> None:
    with g.session_factory.begin() as s:
        row = s.execute(
            text("SELECT vector, created_at, model_version FROM embeddings WHERE id = :i"), {"i": eid}
        ).one()
        s.execute(text("DELETE FROM embeddings WHERE id = :i"), {"i": eid})
        s.execute(
            text(
                "INSERT INTO embeddings (id, person_pk, model_version, vector, created_at) "
                "VALUES (:i, :pk, :m, :v, :at)"
            ),
            {"i": eid + 1000, "pk": pk, "m": row.model_version, "v": row.vector, "at": row.created_at},
        )
