"""Index choice by size (issue 14 item 2): exact up to ``exact_max``, HNSW with exact re-ranking
above; deletes and replacements, the switch both ways, snapshots (small N, tiny limits)."""

from __future__ import annotations

import numpy as np
import pytest

from service.approx_index import REBUILD_FRACTION, SizedIndex
from service.collection_index import DEFAULT, CollectionIndex
from service.gallery.db import make_engine, session_factory
from service.gallery.synced import SyncedGallery
from service.index import FaceIndex
from service.replication import ChangeFeed
from service.snapshot import IndexSnapshots
from tests.service.storage_helpers import DIM, assert_index_equals_database, make_enrolment

LIMIT = 50


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(rng: np.random.Generator, v: np.ndarray, noise: float = 0.3) -> np.ndarray:
    """Queries: the rows of ``v`` plus noise (another photo of the same face)."""
    q = v + noise * rng.standard_normal(v.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def filled(n: int, seed: int = 0, **kw) -> tuple[SizedIndex, FaceIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = unit_rows(rng, n)
    sized = SizedIndex(DIM, exact_max=LIMIT, background=False, **kw)
    exact = FaceIndex(DIM)
    ids = np.arange(10, 10 + n)
    sized.add(ids, v)
    exact.add(ids, v)
    return sized, exact, v


def test_exact_up_to_the_limit_then_approximate_with_the_exact_top_1():
    sized, exact, v = filled(LIMIT)
    assert not sized.approximate() and sized.kind() == "exact"
    rng = np.random.default_rng(1)
    more = unit_rows(rng, 250)
    sized.add(np.arange(1000, 1250), more)
    exact.add(np.arange(1000, 1250), more)
    assert sized.approximate() and sized.kind().startswith("hnsw")
    queries = near(rng, np.concatenate([v, more])[rng.choice(300, 100, replace=False)])
    s_sims, s_ids = sized.search(queries, 5)
    e_sims, e_ids = exact.search(queries, 5)
    assert (s_ids[:, 0] == e_ids[:, 0]).all()
    # the similarities are re-scored exactly: the exact index's, to float rounding
    np.testing.assert_allclose(s_sims[:, 0], e_sims[:, 0], atol=1e-5)
    assert (np.diff(s_sims, axis=1) <= 1e-7).all()  # best first
    assert sized.ids() == exact.ids() and len(sized) == 300


def test_deleted_and_replaced_embeddings_are_never_returned():
    sized, exact, v = filled(200)
    assert sized.approximate()
    rng = np.random.default_rng(2)
    gone = rng.choice(np.arange(10, 210), 30, replace=False)
    assert sized.remove(gone) == 30
    exact.remove(gone)
    # a replacement: the old embedding out, a new one (new id, another vector) in
    old = int(np.setdiff1d(np.arange(10, 210), gone)[0])
    new_vec = unit_rows(rng, 1)
    sized.remove([old])
    sized.add([5000], new_vec)
    exact.remove([old])
    exact.add([5000], new_vec)
    removed = set(gone.tolist()) | {old}
    queries = np.concatenate([v[gone - 10], v[[old - 10]], near(rng, v[:40])])
    sims, ids = sized.search(queries, 10)
    assert not removed & set(ids.ravel().tolist())
    e_sims, e_ids = exact.search(queries, 1)
    assert (ids[:, 0] == e_ids[:, 0]).all()
    # the replacement's new vector finds its new id, and exclusion skips it
    assert sized.search(new_vec, 1)[1][0, 0] == 5000
    assert sized.search(new_vec, 1, exclude=[5000])[1][0, 0] != 5000
    assert sized.vector(old) is None and sized.ids() == exact.ids()


def test_many_tombstones_rebuild_the_graph():
    sized, exact, v = filled(200)
    assert sized.builds == 1
    gone = np.arange(10, 10 + int(200 * REBUILD_FRACTION) + 5)
    sized.remove(gone)
    assert sized.builds == 2  # rebuilt from the exact index, tombstones dropped
    exact.remove(gone)
    rng = np.random.default_rng(3)
    queries = near(rng, v[50:120])
    assert (sized.search(queries, 1)[1][:, 0] == exact.search(queries, 1)[1][:, 0]).all()


def test_the_switch_back_to_exact_below_the_limit_and_over_again():
    sized, exact, v = filled(LIMIT + 10)
    assert sized.approximate()
    sized.remove(np.arange(10, 14))  # 56: still above 0.9 * limit: the graph stays (hysteresis)
    assert sized.approximate()
    sized.remove(np.arange(14, 26))  # 44 < 45: exact again
    assert not sized.approximate() and sized.kind() == "exact" and len(sized) == 44
    exact.remove(np.arange(10, 26))
    q = near(np.random.default_rng(4), v[20:])
    assert (sized.search(q, 1)[1] == exact.search(q, 1)[1]).all()
    sized.add(np.arange(10, 26), v[:16])  # 60 again: over the limit
    assert sized.approximate()


def test_a_background_build_answers_exactly_meanwhile_and_replays_changes():
    rng = np.random.default_rng(5)
    v = unit_rows(rng, 120)
    sized = SizedIndex(DIM, exact_max=LIMIT)  # background build, as in the service
    sized.add(np.arange(120), v)
    sized.remove([0, 1])  # perhaps during the build: replayed onto the graph before it is used
    sized.add([500], unit_rows(rng, 1))
    assert sized.wait(60)
    assert sized.approximate() and sized.ids() == set(range(2, 120)) | {500}
    _, ids = sized.search(v[:2], 3)
    assert not {0, 1} & set(ids.ravel().tolist())


@pytest.mark.parametrize("approximate", [True, False])
def test_serialize_restore_round_trip(approximate):
    sized, exact, v = filled(120 if approximate else 40)
    sized.remove([10, 11])
    data = sized.serialize()
    back = SizedIndex(DIM, exact_max=LIMIT, background=False)
    back.restore(data)
    assert back.approximate() == approximate and back.builds == 0  # the graph came from the snapshot
    assert back.ids() == sized.ids()
    q = near(np.random.default_rng(6), v)
    assert (back.search(q, 3)[1] == sized.search(q, 3)[1]).all()
    # a snapshot holding the exact index alone (an older one) gets its graph rebuilt
    plain = FaceIndex(DIM)
    plain.add(np.arange(120), v if approximate else unit_rows(np.random.default_rng(7), 120))
    again = SizedIndex(DIM, exact_max=LIMIT, background=False)
    again.restore(plain.serialize())
    assert again.approximate() and again.builds == 1


def test_a_damaged_graph_in_a_snapshot_is_rebuilt_not_trusted():
    sized, _, v = filled(120)
    data = bytearray(sized.serialize())
    data[-1] ^= 0xFF  # the tombstone bitmap: one live position now reads removed
    back = SizedIndex(DIM, exact_max=LIMIT, background=False)
    back.restore(bytes(data))
    assert back.approximate() and back.builds == 1 and back.ids() == sized.ids()


def test_each_collection_switches_by_its_own_size():
    rng = np.random.default_rng(8)
    v = unit_rows(rng, 100)
    ix = CollectionIndex(SizedIndex(DIM, exact_max=LIMIT, background=False))
    groups = [frozenset({"door"}) if i < 20 else frozenset() for i in range(100)]
    ix.add(range(100), v, groups)
    kinds = ix.kinds()
    assert kinds["door"] == "exact" and kinds[DEFAULT].startswith("hnsw")
    _, ids = ix.search(v[:30], 1, collections=[DEFAULT, "door"])
    assert (ids[:, 0] == np.arange(30)).all()


# ---- the gallery: snapshots and consistency with a tiny limit ----


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def sized_gallery(sessions) -> SyncedGallery:
    return SyncedGallery(sessions, SizedIndex(DIM, exact_max=8, background=False), "v1")


def test_the_gallery_over_the_limit_stays_consistent_and_restarts_from_its_snapshot(sessions, tmp_path):
    g = sized_gallery(sessions)
    g.load()
    rng = np.random.default_rng(9)
    people = [make_enrolment(rng, f"p{i}") for i in range(20)]
    for e in people:
        g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector)
    assert g.index.kinds()[DEFAULT].startswith("hnsw")
    g.delete("p3")
    again = make_enrolment(rng, "p4")
    g.enroll("p4", again.name, again.crop, again.meta, again.sha, again.vector, replace=True)
    assert g.consistency_check() and g.counts_agree()
    assert_index_equals_database(g)
    hits = g.search(people[3].vector, 3)
    assert "p3" not in {h.person_id for h in hits}
    assert g.search(again.vector, 1)[0].person_id == "p4"

    feed = ChangeFeed(sessions)
    store = IndexSnapshots(tmp_path)
    store.save(g, feed.position(), "a" * 64)
    restarted = sized_gallery(sessions)
    result = store.start(restarted, feed, "a" * 64)
    assert result.source == "snapshot"
    default = restarted.index._indexes[DEFAULT]
    assert isinstance(default, SizedIndex) and default.approximate() and default.builds == 0
    assert restarted.consistency_check()
    for e in people[5:]:
        assert restarted.search(e.vector, 1)[0].person_id == e.person_id
