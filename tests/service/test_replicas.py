"""Two replicas on one database stay consistent through the change log (SQLite file and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from service.crop_embed import StoredCrop, decode_png
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.synced import SyncedGallery
from service.gallery.tables import Person, ReferenceCrop
from service.index import FaceIndex
from service.replication import ChangeFeed, Replicator
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.lifecycle_helpers import private_models, start_client
from tests.service.storage_helpers import DIM, assert_index_equals_database, make_enrolment

DEADLINE = 5.0  # generous for a loaded CI machine; replicas poll every 0.2 s here


def _until(check, deadline: float = DEADLINE):
    """Poll ``check`` until it returns something truthy; returns it (or the last falsy value)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def _verified(client, probe: Path, person_id: str) -> dict | None:
    r = post_photo(client, "/verify", probe, person_id=person_id)
    return r.json() if r.status_code == 200 else None


@pytest.fixture
def replicas(database_url: str, tmp_path: Path):
    models = private_models(tmp_path)
    clients = []

    def start():
        c = start_client(database_url, tmp_path, models, sync_interval=0.2)
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.__exit__(None, None, None)


@pytest.mark.lfw
def test_enrol_on_one_replica_is_answered_by_the_other(replicas, lfw_people) -> None:
    a, b = replicas(), replicas()
    alice, bob = lfw_people[0], lfw_people[1]
    probe = sorted(alice.glob("*.jpg"))[1]
    assert_problem(post_photo(b, "/verify", probe, person_id="alice"), 404, "person_not_found")

    r = post_photo(a, "/enroll", sorted(alice.glob("*.jpg"))[0], name="Alice", person_id="alice",
                   face_selection="largest")  # fmt: skip
    assert r.status_code == 201, r.text
    body = _until(lambda: _verified(b, probe, "alice"))
    assert body and body["match"], body
    found = post_photo(b, "/identify", probe).json()
    assert found["result"] == "match" and found["person"]["person_id"] == "alice"

    # a replacement on B (another photo, another name) reaches A; then a deletion on B
    r = post_photo(b, "/enroll", sorted(alice.glob("*.jpg"))[2], name="Alice R.", person_id="alice",
                   face_selection="largest", replace=True)  # fmt: skip
    assert r.status_code == 201, r.text
    assert _until(lambda: a.get("/people/alice").json().get("name") == "Alice R.")
    assert _until(lambda: post_photo(a, "/identify", probe).json()["candidates"][0]["name"] == "Alice R.")

    r = post_photo(
        b, "/enroll", sorted(bob.glob("*.jpg"))[0], name="Bob", person_id="bob", face_selection="largest"
    )
    assert r.status_code == 201
    assert b.delete("/people/alice").status_code == 204
    gone = _until(lambda: post_photo(a, "/verify", probe, person_id="alice").status_code == 404)
    assert gone
    assert _until(lambda: a.app.state.facegate.recognizer.gallery.size() == 1)
    assert a.get("/readyz").status_code == 200 and b.get("/readyz").status_code == 200

    # a replica started later (or restarted) starts from the database
    c = replicas()
    assert c.app.state.facegate.recognizer.gallery.size() == 1
    assert post_photo(c, "/verify", sorted(bob.glob("*.jpg"))[1], person_id="bob").json()["match"]


@pytest.mark.lfw
def test_sync_interval_zero_turns_replication_off(database_url: str, tmp_path: Path, lfw_people) -> None:
    models = private_models(tmp_path)
    a = start_client(database_url, tmp_path, models, sync_interval=0)
    b = start_client(database_url, tmp_path, models, sync_interval=0)
    try:
        person = lfw_people[2]
        r = post_photo(a, "/enroll", sorted(person.glob("*.jpg"))[0], name="C", person_id="c",
                       face_selection="largest")  # fmt: skip
        assert r.status_code == 201
        time.sleep(0.5)
        assert b.app.state.facegate.recognizer.gallery.size() == 0
        assert b.app.state.facegate.replicator.poll_once() == 1  # what the thread would have done
        assert b.app.state.facegate.recognizer.gallery.size() == 1
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


# ---- the same mechanisms at the gallery level (no models, no photos) ----


def _mean_colour(crops) -> np.ndarray:
    """A stand-in "model": the crop's mean colour spread over DIM dimensions, unit length."""
    out = []
    for c in crops:
        v = np.resize(decode_png(c.png).reshape(-1, 3).mean(0), DIM).astype(np.float32) + 1.0
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.fixture
def sessions(database_url: str):
    engine = make_engine(database_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _enrol(g: SyncedGallery, e) -> None:
    g.enroll(person_id=e.person_id, name=e.name, crop_png=e.crop, face_meta=e.meta, photo_sha256=e.sha,
             embedding=e.vector)  # fmt: skip


def test_a_replica_follows_the_change_log(sessions) -> None:
    rng = np.random.default_rng(0)
    a = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    b = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    a.load(), b.load()
    feed = ChangeFeed(sessions)
    replicator = Replicator(feed, b.refresh, interval=0, position=feed.position())
    people = [make_enrolment(rng, f"p{i}") for i in range(4)]
    for e in people:
        _enrol(a, e)
    assert b.size() == 0 and replicator.poll_once() == 4
    assert_index_equals_database(b)
    a.delete("p1")
    _enrol(a, make_enrolment(rng, "p5"))
    assert replicator.poll_once() == 2 and replicator.poll_once() == 0
    assert b.size() == 4 and "p1" not in {c.person_id for c in b.search(people[1].vector, 5)}
    assert_index_equals_database(b)


def test_a_new_version_embeds_every_stored_crop_and_keeps_in_step(sessions) -> None:
    rng = np.random.default_rng(1)
    old = SyncedGallery(
        sessions, FaceIndex(DIM), "v1", alignment={"size": [12, 14], "template": [[0, 0]] * 5}
    )
    old.load()
    for i in range(5):
        _enrol(old, make_enrolment(rng, f"p{i}"))
    new = SyncedGallery(sessions, FaceIndex(DIM), "v2", reembed=_mean_colour)
    new.load()
    assert new.size() == 0 and new.backfill(batch=2) == 5
    assert_index_equals_database(new)
    assert old.get("p0").model_versions == ("v1", "v2")
    with sessions() as s:  # the crop remembers how it was cut (for a model with another template)
        assert all(c.meta["alignment"]["size"] == [12, 14] for c in s.query(ReferenceCrop))
    # while both are live, a write through the old gallery reaches the new one via the listener
    old.add_listener(lambda pid, source: new.refresh([pid]))
    _enrol(old, make_enrolment(rng, "p9"))
    old.delete("p0")
    assert new.size() == 5 and {"p9"} <= {
        c.person_id for c in new.search(_mean_colour([_crop(sessions, "p9")])[0], 1)
    }
    assert_index_equals_database(new)
    assert new.backfill() == 0  # nothing left to embed


def _crop(sessions, person_id: str) -> StoredCrop:
    with sessions() as s:
        row = s.query(ReferenceCrop).join(Person).filter(Person.person_id == person_id).one()
        return StoredCrop(row.image_png, row.meta)


def test_a_crop_that_cannot_be_embedded_is_skipped(sessions) -> None:
    rng = np.random.default_rng(2)
    old = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    for i in range(3):
        _enrol(old, make_enrolment(rng, f"p{i}"))

    def flaky(crops):
        if any(c.png == _crop(sessions, "p1").png for c in crops):
            raise ValueError("unreadable")
        return _mean_colour(crops)

    new = SyncedGallery(sessions, FaceIndex(DIM), "v2", reembed=flaky)
    assert new.backfill() == 2 and new.size() == 2
