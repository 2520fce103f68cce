"""Start-up from an index snapshot, and each fallback to a full rebuild (issue 14 item 3)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import insert

from service.gallery import status
from service.gallery.cipher import TemplateCipher, new_key, parse_keys
from service.gallery.db import make_engine, session_factory
from service.gallery.synced import SyncedGallery
from service.gallery.tables import Embedding, Person
from service.index import FaceIndex
from service.replication import ChangeFeed
from service.snapshot import IndexSnapshots
from tests.service.storage_helpers import DIM, assert_index_equals_database, make_enrolment

SHA = "a" * 64


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def enrol(g, rng, pid, collections=None):
    e = make_enrolment(rng, pid)
    g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector, collections=collections)
    return e


def filled(sessions, n: int = 12, seed: int = 0) -> SyncedGallery:
    g = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    g.load()
    rng = np.random.default_rng(seed)
    for i in range(n):
        enrol(g, rng, f"p{i}", ["door"] if i % 3 == 0 else None)
    return g


def fresh(g: SyncedGallery, version: str | None = None) -> SyncedGallery:
    return SyncedGallery(g.session_factory, FaceIndex(DIM), version or g.model_version)


def state_of(g: SyncedGallery) -> tuple:
    return (
        g.index.ids(),
        g.index.sizes(),
        dict(g._by_id),
        {i: g.index.collections_of(i) for i in g.index.ids()},
    )


def test_a_start_loads_the_snapshot_and_replays_the_changes_since(sessions, tmp_path):
    g = filled(sessions)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    store.save(g, feed.position(), SHA)

    rng = np.random.default_rng(1)
    enrol(g, rng, "late", ["lobby"])  # after the snapshot: replayed
    g.delete("p1")
    again = make_enrolment(rng, "p2")
    g.enroll("p2", "P two", again.crop, again.meta, again.sha, again.vector, replace=True)
    g.edit_collections("p4", add=["door"])
    g.set_status("p5", status.StatusChange(status="suspended"))

    started = fresh(g)
    result = store.start(started, feed, SHA)
    assert result.source == "snapshot" and result.reason is None and result.replayed == 5
    assert state_of(started) == state_of(g)
    assert started.size() == g.size() and started.size(["door"]) == g.size(["door"])
    assert started.availability.reason("p5") == "suspended"
    assert [c.person_id for c in started.search(again.vector, 1)] == ["p2"]
    g.set_status("p5", status.StatusChange(status="active"))
    started.refresh(["p5"])
    assert_index_equals_database(started)


def test_a_missing_snapshot_means_a_rebuild(sessions, tmp_path):
    g = filled(sessions)
    result = IndexSnapshots(tmp_path).start(fresh(g), ChangeFeed(sessions), SHA)
    assert result.source == "rebuild" and result.reason == "missing"


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_a_corrupt_snapshot_means_a_rebuild(sessions, tmp_path, damage):
    g = filled(sessions)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    path = store.save(g, feed.position(), SHA)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "garbage":
        data = bytearray(b"not a snapshot at all")
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    started = fresh(g)
    result = store.start(started, feed, SHA)
    assert result.source == "rebuild" and result.reason == "corrupt"
    assert state_of(started) == state_of(g)
    assert_index_equals_database(started)


def test_a_snapshot_of_another_model_means_a_rebuild(sessions, tmp_path):
    g = filled(sessions)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    path = store.save(g, feed.position(), SHA)
    # same version, another ONNX file (a re-published model)
    assert store.start(fresh(g), feed, "b" * 64).reason == "other model"
    # another version's file put in this version's place
    other = fresh(g, "v2")
    store.path("v2").write_bytes(path.read_bytes())
    result = store.start(other, feed, SHA)
    assert result.source == "rebuild" and result.reason == "other model" and len(other.index) == 0


def test_a_snapshot_ahead_of_the_database_means_a_rebuild(sessions, tmp_path):
    g = filled(sessions)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    store.save(g, feed.position() + 50, SHA)  # e.g. the database was restored from an older backup
    result = store.start(fresh(g), feed, SHA)
    assert result.source == "rebuild" and result.reason == "ahead"


def test_a_change_behind_the_logs_back_means_a_rebuild(sessions, tmp_path):
    g = filled(sessions)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    store.save(g, feed.position(), SHA)
    # an embedding stored for v1 without a change-log row (as a backfill by another process does)
    p = Person(person_id="ghost", name="Ghost")
    with sessions.begin() as s:
        s.add(p)
        s.flush()
        s.execute(
            insert(Embedding).values(
                person_pk=p.id, model_version="v1", vector=np.ones(DIM, np.float32).tobytes()
            )
        )
    started = fresh(g)
    result = store.start(started, feed, SHA)
    assert result.source == "rebuild" and result.reason == "count"
    assert "ghost" in started._by_person
    assert_index_equals_database(started)


def test_with_encryption_the_snapshot_is_sealed(sessions, tmp_path):
    g = filled(sessions, n=3)
    feed = ChangeFeed(sessions)
    cipher = TemplateCipher(parse_keys(new_key("k1")))
    store = IndexSnapshots(tmp_path, cipher)
    path = store.save(g, feed.position(), SHA)
    raw = path.read_bytes()
    vector = g.embedding_of("p1").tobytes()
    assert vector not in raw and b"p1" not in raw
    assert store.start(fresh(g), feed, SHA).source == "snapshot"
    result = IndexSnapshots(tmp_path).start(fresh(g), feed, SHA)  # without the key
    assert result.source == "rebuild" and result.reason == "corrupt"


def test_the_service_restarts_from_the_snapshot_it_saved_at_shutdown(make_client, lfw_people):
    from tests.service.api_helpers import post_photo

    photos = sorted(lfw_people[0].glob("*.jpg"))
    client = make_client()
    assert client.app.state.facegate.lifecycle.started_from.reason == "missing"
    r = post_photo(
        client, "/enroll", photos[0], name="Ann", person_id="ann", face_selection="largest", collection="door"
    )
    assert r.status_code == 201, r.text
    client.__exit__(None, None, None)  # shutdown: the snapshot is saved

    again = make_client()
    started = again.app.state.facegate.lifecycle.started_from
    assert started.source == "snapshot" and started.replayed == 0
    found = post_photo(again, "/identify", photos[1], collection="door").json()
    assert found["person"]["person_id"] == "ann" and found["gallery_size"] == 1
    assert again.get("/readyz").status_code == 200


def test_the_saver_saves_only_when_the_change_log_moved(sessions, tmp_path):
    from service.snapshot import SnapshotSaver

    g = filled(sessions, n=3)
    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    saver = SnapshotSaver(store, lambda: (g, SHA), feed.position, feed, interval=0)
    assert saver.save() == store.path("v1")
    assert saver.save() is None  # nothing changed since
    enrol(g, np.random.default_rng(3), "new")
    assert saver.save() == store.path("v1")
    started = fresh(g)
    result = store.start(started, feed, SHA)
    assert result.source == "snapshot" and result.replayed == 0 and "new" in started._by_person
