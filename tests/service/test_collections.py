"""Collections in the index and the gallery: membership, per-collection search and size,
edits, restart, replicas (issue 14 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from service.collection_index import DEFAULT, CollectionIndex
from service.errors import InvalidRequest
from service.gallery import status
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.gallery.membership import LastCollection
from service.gallery.synced import SyncedGallery
from service.index import FaceIndex
from tests.service.storage_helpers import (
    DIM,
    assert_index_equals_database,
    make_enrolment,
    new_gallery,
    replica_pair,
    unit,
)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---- the index ----


def test_an_embedding_in_two_collections_is_found_in_each_and_once_in_both():
    v = vectors(4)
    ix = CollectionIndex(FaceIndex(DIM))
    ix.add(
        [1, 2, 3, 4],
        v,
        [frozenset(), frozenset({"door"}), frozenset({"door", "lobby"}), frozenset({DEFAULT, "lobby"})],
    )
    assert len(ix) == 4 and ix.ids() == {1, 2, 3, 4}
    assert ix.sizes() == {DEFAULT: 2, "door": 2, "lobby": 2}
    assert ix.count(["door", "lobby"]) == 3 and ix.count([DEFAULT, "door", "lobby"]) == 4

    _, ids = ix.search(v[2:3], 4, collections=["door"])
    assert set(ids[0][ids[0] >= 0].tolist()) == {2, 3}
    _, ids = ix.search(v[2:3], 4)  # default
    assert set(ids[0][ids[0] >= 0].tolist()) == {1, 4}
    sims, ids = ix.search(v[2:3], 4, collections=["door", "lobby"])
    assert ids[0][0] == 3 and sorted(ids[0].tolist()) == [-1, 2, 3, 4]  # 3 once, though in both
    assert list(sims[0][:3]) == sorted(sims[0][:3], reverse=True)
    np.testing.assert_allclose(ix.vector(3), v[2], atol=1e-6)

    assert ix.move(3, ["lobby"]) and ix.collections_of(3) == {"lobby"}
    assert ix.sizes()["door"] == 1 and len(ix) == 4
    assert ix.remove([3, 4, 99]) == 2 and ix.ids() == {1, 2} and len(ix) == 2
    assert ix.sizes() == {DEFAULT: 1, "door": 1, "lobby": 0}


def test_rebuild_keeps_known_collections_and_replaces_the_content():
    v = vectors(3, seed=1)
    ix = CollectionIndex(FaceIndex(DIM))
    ix.declare(["empty"])
    ix.rebuild([5, 6, 7], v, [frozenset({"a"}), frozenset(), frozenset({"a", DEFAULT})])
    assert ix.knows("empty") and ix.sizes() == {DEFAULT: 2, "a": 2, "empty": 0} and len(ix) == 3
    _, ids = ix.search(v[0:1], 1, collections=["empty"])
    assert ids.tolist() == [[-1]]


# ---- the gallery ----


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def enrol(g: Gallery, rng, pid: str, collections=None):
    e = make_enrolment(rng, pid)
    g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector, collections=collections)
    return e


def found(g: Gallery, vector, collections=None, k: int = 10) -> list[str]:
    return [c.person_id for c in g.search(vector, k, collections)]


def test_each_collection_is_searched_apart_with_its_own_size(sessions):
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(7)
    staff = [enrol(g, rng, f"s{i}") for i in range(5)]
    door = [enrol(g, rng, f"d{i}", ["door"]) for i in range(3)]
    both = enrol(g, rng, "both", ["door", "lobby"])
    assert g.size() == 9 and g.size([DEFAULT]) == 5 and g.size(["door"]) == 4 and g.size(["lobby"]) == 1
    assert g.size(["door", "lobby"]) == 4 and g.size([DEFAULT, "door"]) == 9

    assert found(g, door[0].vector, ["door"])[0] == "d0"
    assert "d0" not in found(g, door[0].vector)  # default holds the staff only
    assert set(found(g, staff[0].vector)) == {e.person_id for e in staff}
    assert found(g, both.vector, ["lobby"]) == ["both"]
    assert g.get("both").collections == ("door", "lobby") and g.get("s0").collections == (DEFAULT,)
    assert_index_equals_database(g)

    g.set_status("d1", status.StatusChange(status="suspended"))
    assert g.size(["door"]) == 3 and "d1" not in found(g, door[1].vector, ["door"])

    records, total = g.page(0, 50, None, "door")
    assert total == 4 and {r.person_id for r in records} == {"d0", "d1", "d2", "both"}
    assert g.page(0, 50, None, DEFAULT)[1] == 5 and g.page(0, 50, None, "nowhere")[1] == 0
    assert g.collection_sizes() == {DEFAULT: (5, 5), "door": (4, 3), "lobby": (1, 1)}


def test_membership_edits_move_the_person_between_indexes(sessions):
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(8)
    e = enrol(g, rng, "ann")
    record = g.edit_collections("ann", add=["door"])
    assert record.collections == (DEFAULT, "door")  # added, still in default
    assert found(g, e.vector, ["door"]) == ["ann"] and found(g, e.vector) == ["ann"]
    assert g.edit_collections("ann", remove=[DEFAULT]).collections == ("door",)
    assert found(g, e.vector) == [] and g.size([DEFAULT]) == 0
    assert g.edit_collections("ann", remove=["door"]).collections == (DEFAULT,)  # nowhere named: default
    assert found(g, e.vector) == ["ann"] and found(g, e.vector, ["door"]) == []
    with pytest.raises(LastCollection):
        g.edit_collections("ann", remove=[DEFAULT])
    with pytest.raises(InvalidRequest):
        g.edit_collections("ann", add=["no spaces"])

    # a replacement keeps the collections; a deletion leaves no membership behind
    g.edit_collections("ann", add=["lobby"])
    again = make_enrolment(rng, "ann")
    g.enroll("ann", "Ann", again.crop, again.meta, again.sha, again.vector, replace=True)
    assert g.get("ann").collections == (DEFAULT, "lobby") and found(g, again.vector, ["lobby"]) == ["ann"]
    g.delete("ann")
    assert g.size(["lobby"]) == 0 and g.collection_sizes()["lobby"] == (0, 0)
    assert len(g.index) == 0


def test_collections_survive_a_restart(sessions):
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(9)
    e = enrol(g, rng, "x", ["door", "lobby"])
    enrol(g, rng, "y")
    enrol(g, rng, "z", ["emptied"])
    g.edit_collections("z", remove=["emptied"])
    again = new_gallery(g)
    assert again.load() == 3
    assert found(again, e.vector, ["door"]) == ["x"] and found(again, e.vector, ["lobby"]) == ["x"]
    assert again.size(["door"]) == 1 and again.size([DEFAULT]) == 2
    assert again.knows_collection("emptied") and not again.knows_collection("never")
    assert again.index.sizes() == g.index.sizes()


def test_a_replica_follows_membership_changes(sessions):
    a, b, follow = replica_pair(sessions)
    rng = np.random.default_rng(10)
    e = enrol(a, rng, "p", ["door"])
    enrol(a, rng, "q")
    follow.poll_once()
    assert found(b, e.vector, ["door"]) == ["p"] and b.size([DEFAULT]) == 1

    a.edit_collections("p", add=["lobby"], remove=["door"])
    follow.poll_once()
    assert found(b, e.vector, ["door"]) == [] and found(b, e.vector, ["lobby"]) == ["p"]
    assert b.index.collections_of(b._by_person["p"]) == {"lobby"}
    assert b.index.sizes() == a.index.sizes()
    assert_index_equals_database(b)


def test_searching_many_collections_counts_each_person_once(sessions):
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(11)
    for i in range(6):
        enrol(g, rng, f"p{i}", ["a", "b"] if i % 2 else ["a"])
    q = unit(rng)
    hits = found(g, q, ["a", "b"])
    assert len(hits) == len(set(hits)) == 6 and g.size(["a", "b"]) == 6


def test_a_model_being_adopted_learns_membership_edits_from_the_listener(sessions):
    current = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    adopted = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    current.load()
    adopted.load()
    current.add_listener(lambda pid, source: adopted.refresh([pid]))
    e = enrol(current, np.random.default_rng(12), "w", ["door"])
    assert found(adopted, e.vector, ["door"]) == ["w"]
    current.edit_collections("w", add=["lobby"], remove=["door"])
    assert found(adopted, e.vector, ["lobby"]) == ["w"] and found(adopted, e.vector, ["door"]) == []
