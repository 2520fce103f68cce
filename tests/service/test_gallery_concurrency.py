"""Concurrent writers and readers, and failures between the database and the index."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from sqlalchemy.orm import Session

from service.auth import KeyStore
from service.errors import AlreadyEnrolled, PersonNotFound
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.index import FaceIndex
from tests.service.storage_helpers import (
    DIM,
    assert_index_equals_database,
    enroll,
    make_enrolment,
    new_gallery,
    snapshot,
    unit,
)

THREADS = 6
OPS_PER_THREAD = 50
HAMMER = Caller(1, "hammer", frozenset({"verify"}))


@pytest.fixture
def gallery(database_url):
    engine = make_engine(database_url)
    g = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
    g.load()
    yield g
    engine.dispose()


def test_thread_hammer_keeps_index_equal_to_database(gallery):
    """Threads enrol, replace, search, verify, delete, audit and authenticate at once on a shared
    pool of person ids; afterwards the index equals the database, and a restart agrees."""
    keys = KeyStore(gallery.session_factory)
    plaintext, _ = keys.create("hammer", {"verify"})
    errors: list[BaseException] = []
    counts = {"enroll": 0, "delete": 0, "search": 0}
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        pick = random.Random(seed)
        try:
            start.wait()
            for _ in range(OPS_PER_THREAD):
                pid = f"p{pick.randrange(16)}"  # shared between threads: real conflicts
                op = pick.random()
                if op < 0.4:
                    try:
                        enroll(gallery, make_enrolment(rng, pid), replace=pick.random() < 0.3)
                        counts["enroll"] += 1
                    except AlreadyEnrolled:
                        pass
                elif op < 0.75:
                    for hit in gallery.search(unit(rng), 5):
                        assert hit.person_id.startswith("p")
                    try:
                        gallery.embedding_of(pid)
                    except PersonNotFound:
                        pass
                    audit.record(
                        gallery.session_factory,
                        audit.row(
                            HAMMER, "identify", person_id=pid, result="unknown", score=0.1, model_version="m1"
                        ),
                    )
                    assert keys.authenticate(plaintext) is not None
                    counts["search"] += 1
                else:
                    try:
                        gallery.delete(pid)
                        counts["delete"] += 1
                    except PersonNotFound:
                        pass
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert counts["enroll"] > 20 and counts["delete"] > 5 and counts["search"] > 20
    assert_index_equals_database(gallery)
    restarted = new_gallery(gallery)
    restarted.load()
    assert restarted.index.ids() == gallery.index.ids()
    page, total = gallery.page(0, 100, None)
    assert total == gallery.size() == len(page)


def test_index_failure_after_commit_rebuilds_from_database(gallery, monkeypatch):
    rng = np.random.default_rng(1)
    enroll(gallery, make_enrolment(rng, "a"))
    calls = {"n": 0}
    real_add = gallery.index.add

    def flaky_add(ids, vectors):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("simulated")
        real_add(ids, vectors)

    monkeypatch.setattr(gallery.index, "add", flaky_add)
    e = make_enrolment(rng, "b")
    enroll(gallery, e)  # committed; the failed index update is repaired by a rebuild
    assert gallery.search(e.vector, 1)[0].person_id == "b"
    assert_index_equals_database(gallery)


def test_index_left_stale_is_reported_and_repaired_before_the_next_write(gallery, monkeypatch):
    rng = np.random.default_rng(2)
    enroll(gallery, make_enrolment(rng, "a"))

    def broken(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(gallery.index, "add", broken)
    monkeypatch.setattr(gallery.index, "rebuild", broken)
    enroll(gallery, make_enrolment(rng, "b"))  # stored; the index cannot follow
    assert gallery.stale and not gallery.consistency_check()
    with pytest.raises(MemoryError):  # a stale gallery refuses writes it cannot reload for
        gallery.delete("a")
    monkeypatch.undo()
    gallery.delete("a")  # reloads first, then deletes
    assert not gallery.stale and [p.person_id for p in gallery.page(0, 10, None)[0]] == ["b"]
    assert_index_equals_database(gallery)


def test_failed_commit_changes_neither_database_nor_index(gallery, monkeypatch):
    rng = np.random.default_rng(3)
    enroll(gallery, make_enrolment(rng, "a"))
    before = (snapshot(gallery.session_factory.kw["bind"]), gallery.index.ids())

    def failing_commit(self):
        raise ConnectionError("simulated loss of the database during COMMIT")

    monkeypatch.setattr(Session, "commit", failing_commit)
    with pytest.raises(ConnectionError):
        enroll(gallery, make_enrolment(rng, "b"))
    with pytest.raises(ConnectionError):
        gallery.delete("a")
    monkeypatch.undo()
    assert (snapshot(gallery.session_factory.kw["bind"]), gallery.index.ids()) == before
    assert_index_equals_database(gallery)
