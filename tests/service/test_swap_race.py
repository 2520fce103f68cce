"""A reference replaced while a model swap re-embeds the gallery: the new version ends up with the
new crop's embedding, never the old one's (issue 11, C8).

The race is made deterministic with a hook between the embed step and the store step of the new
version's re-embedding: the hook replaces the reference (through the old version, in another
thread, as a concurrent request would), waits until that replacement has committed, and only then
lets the store step run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.crop_embed import StoredCrop, decode_png
from service.gallery.db import make_engine, session_factory
from service.gallery.synced import SyncedGallery
from service.gallery.tables import Person, ReferenceCrop
from service.index import FaceIndex
from tests.service.api_helpers import post_photo
from tests.service.lifecycle_helpers import add_version, private_models, start_client
from tests.service.storage_helpers import DIM, assert_index_equals_database, db_index_state, make_enrolment

DEADLINE = 30.0


def _until(check: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _mean_colour(crops: list[StoredCrop]) -> np.ndarray:
    """A stand-in "model": the crop's mean colour spread over DIM dimensions, unit length."""
    out = []
    for c in crops:
        v = np.resize(decode_png(c.png).reshape(-1, 3).mean(0), DIM).astype(np.float32) + 1.0
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def _stored_png(sessions, person_id: str) -> bytes:
    with sessions() as s:
        return s.query(ReferenceCrop).join(Person).filter(Person.person_id == person_id).one().image_png


@pytest.fixture
def sessions(database_url: str):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize("listener", [True, False], ids=["listener", "no-listener"])
def test_a_reference_replaced_between_embed_and_store_is_not_kept(sessions, listener: bool) -> None:
    """With the lifecycle's listener (a replacement on this replica) and without it (a replacement
    by another process, seen later through the change log): either way the new version holds the
    new crop's embedding once the re-embedding is over."""
    rng = np.random.default_rng(11)
    old = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    old.load()
    people = [make_enrolment(rng, f"p{i}") for i in range(4)]
    for e in people:
        old.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector)
    replacement = make_enrolment(rng, "p1")
    calls: list[int] = []
    replacer: list[threading.Thread] = []

    def embed_then_replace(crops: list[StoredCrop]) -> np.ndarray:
        vectors = _mean_colour(crops)  # the embed step, from the crops read before
        calls.append(len(crops))
        if len(calls) == 1:
            assert any(c.png == people[1].crop for c in crops)
            t = threading.Thread(
                target=old.enroll,
                args=(replacement.person_id, replacement.name, replacement.crop, replacement.meta),
                kwargs={"photo_sha256": replacement.sha, "embedding": replacement.vector, "replace": True},
            )
            t.start()
            replacer.append(t)
            _until(lambda: _stored_png(sessions, "p1") == replacement.crop, "the replacement to commit")
        return vectors  # ... and now the store step

    new = SyncedGallery(sessions, FaceIndex(DIM), "v2", reembed=embed_then_replace)
    if listener:
        old.add_listener(lambda pid, source: new.refresh([pid]))
    new.load()
    new.backfill()
    for t in replacer:
        t.join(DEADLINE)
    assert replacer and not replacer[0].is_alive()

    want = _mean_colour([StoredCrop(replacement.crop, {})])[0]
    stale = _mean_colour([StoredCrop(people[1].crop, {})])[0]
    stored = {pid: v for pid, v in db_index_state(new).values()}
    assert np.allclose(stored["p1"], want) and not np.allclose(stored["p1"], stale)
    assert np.allclose(new.embedding_of("p1"), want)
    assert new.search(want, 1)[0].person_id == "p1"
    for e in (people[0], people[2], people[3]):
        assert np.allclose(new.embedding_of(e.person_id), _mean_colour([StoredCrop(e.crop, {})])[0])
    assert_index_equals_database(new)
    assert new.backfill() == 0 and new.refresh(["p1"]) == 0


def test_a_person_deleted_between_embed_and_store_stays_deleted(sessions) -> None:
    rng = np.random.default_rng(12)
    old = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    for i in range(3):
        e = make_enrolment(rng, f"p{i}")
        old.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector)

    def embed_then_delete(crops: list[StoredCrop]) -> np.ndarray:
        if any(c.png == _stored_png(sessions, "p2") for c in crops):
            old.delete("p2")  # no listener here: the delete does not wait on the new gallery
        return _mean_colour(crops)

    new = SyncedGallery(sessions, FaceIndex(DIM), "v2", reembed=embed_then_delete)
    new.load()
    assert new.backfill() == 2 and new.size() == 2
    assert "p2" not in {pid for pid, _ in db_index_state(new).values()}
    assert_index_equals_database(new)


@pytest.mark.lfw
def test_replace_during_a_swap_through_the_api(
    database_url: str, tmp_path: Path, lfw_people, monkeypatch
) -> None:
    """End to end: the old photo must not verify at similarity 1.0 on the new version."""
    models = private_models(tmp_path)
    new_v = add_version(models, "race-b").version
    client = start_client(database_url, tmp_path, models)
    try:
        photos = [sorted(p.glob("*.jpg")) for p in lfw_people[:3]]
        for i, person in enumerate(photos):
            r = post_photo(
                client, "/enroll", person[0], name=f"n{i}", person_id=f"p{i}", face_selection="largest"
            )
            assert r.status_code == 201, r.text
        before = client.get("/people/p0").json()["updated_at"]
        replaced: list[object] = []
        real_embed = SyncedGallery._embed

        def embed_then_replace(self: SyncedGallery, states):
            vectors = real_embed(self, states)
            if self.model_version == new_v and not replaced:

                def replace() -> None:
                    r = post_photo(client, "/enroll", photos[0][1], name="n0", person_id="p0",
                                   replace=True, face_selection="largest", allow_duplicate=True)  # fmt: skip
                    replaced.append(r)

                t = threading.Thread(target=replace)
                t.start()
                replaced.append(t)
                _until(lambda: client.get("/people/p0").json()["updated_at"] != before, "the replacement")
            return vectors

        monkeypatch.setattr(SyncedGallery, "_embed", embed_then_replace)
        r = client.post(f"/admin/models/{new_v}/activate", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        thread = replaced[0]
        assert isinstance(thread, threading.Thread)
        thread.join(DEADLINE)
        assert replaced[1].status_code == 201, replaced[1].text  # type: ignore[union-attr]
        assert client.get("/model").json()["version"] == new_v

        old_photo = post_photo(client, "/verify", photos[0][0], person_id="p0").json()
        new_photo = post_photo(client, "/verify", photos[0][1], person_id="p0").json()
        assert old_photo["model_version"] == new_photo["model_version"] == new_v
        # the reference is the replacing photo, re-embedded from its stored canvas (which a resampling
        # separates from the photo's own crop by a cosine of about 1e-3), not the replaced one
        assert new_photo["similarity"] >= 0.997, new_photo
        assert old_photo["similarity"] < new_photo["similarity"] - 0.01, old_photo
    finally:
        client.__exit__(None, None, None)
