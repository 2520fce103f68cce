"""The FAISS index wrapper: exact search against brute force, ids, validation, threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.index import FaceIndex


def units(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_search_is_exact_inner_product_against_brute_force():
    rng = np.random.default_rng(0)
    vectors, queries = units(rng, 300, 32), units(rng, 7, 32)
    ids = rng.permutation(10_000)[:300] + 5
    index = FaceIndex(32)
    index.add(ids.tolist(), vectors)
    sims, found = index.search(queries, 10)
    brute = queries @ vectors.T
    order = np.argsort(-brute, axis=1)[:, :10]
    assert np.array_equal(found, ids[order])
    assert np.allclose(sims, np.take_along_axis(brute, order, axis=1), atol=1e-5)
    assert sims.shape == found.shape == (7, 10) and found.dtype == np.int64


def test_add_remove_ids_len_and_vectors():
    index = FaceIndex(4)
    eye = np.eye(4, dtype=np.float32)
    index.add([10, 20, 30], eye[:3])
    assert index.ids() == {10, 20, 30} and len(index) == 3
    assert np.array_equal(index.vector(20), eye[1]) and index.vector(99) is None
    assert index.remove([20, 77]) == 1 and index.ids() == {10, 30} and len(index) == 2
    sims, ids = index.search(eye[1], 3)
    assert 20 not in ids[0] and ids[0, 2] == -1 and sims[0, 2] == -np.inf
    index.add([20], eye[1:2])  # an id can come back after removal
    assert index.search(eye[1], 1)[1][0, 0] == 20


def test_empty_index_answers_with_empty_slots():
    sims, ids = FaceIndex(8).search(np.ones((2, 8), np.float32), 3)
    assert (ids == -1).all() and np.isneginf(sims).all() and ids.shape == (2, 3)


@pytest.mark.parametrize(
    "ids, vectors",
    [
        ([1], np.ones((1, 5), np.float32)),  # wrong dimension
        ([1, 2], np.ones((1, 8), np.float32)),  # (1, 8) for dim 4 is not two vectors
        ([1, 2], np.ones((3, 4), np.float32)),  # count mismatch
        ([1, 1], np.ones((2, 4), np.float32)),  # repeated id
        ([-3], np.ones((1, 4), np.float32)),  # negative id
        ([1], np.full((1, 4), np.nan, np.float32)),  # not finite
        ([5], np.ones((1, 4), np.float32)),  # already indexed
    ],
)
def test_invalid_adds_raise_and_change_nothing(ids, vectors):
    index = FaceIndex(4)
    index.add([5], np.eye(4, dtype=np.float32)[:1])
    with pytest.raises(ValueError):
        index.add(ids, vectors)
    assert index.ids() == {5} and len(index) == 1


def test_search_validates_queries():
    index = FaceIndex(4)
    with pytest.raises(ValueError):
        index.search(np.ones(5, np.float32), 1)
    with pytest.raises(ValueError):
        index.search(np.ones(4, np.float32), 0)
    with pytest.raises(ValueError):
        FaceIndex(0)
    with pytest.raises(ValueError):
        FaceIndex(4, threads=-1)


def test_search_answers_the_same_on_one_thread_and_on_faiss_default():
    rng = np.random.default_rng(3)
    vectors = units(rng, 500, 16)
    one, default = FaceIndex(16, threads=1), FaceIndex(16, threads=0)
    one.add(range(500), vectors)
    default.add(range(500), vectors)
    a, b = one.search(vectors[:30], 7), default.search(vectors[:30], 7)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0], atol=1e-6)


def test_rebuild_replaces_everything_and_a_failed_rebuild_changes_nothing():
    rng = np.random.default_rng(1)
    index = FaceIndex(8)
    index.add([1, 2, 3], units(rng, 3, 8))
    fresh = units(rng, 2, 8)
    index.rebuild([7, 8], fresh)
    assert index.ids() == {7, 8} and np.array_equal(index.vector(8), fresh[1])
    with pytest.raises(ValueError):
        index.rebuild([9, 9], units(rng, 2, 8))
    assert index.ids() == {7, 8} and len(index) == 2
    index.rebuild([], np.zeros((0, 8), np.float32))
    assert len(index) == 0


def test_concurrent_adds_removes_and_searches():
    rng = np.random.default_rng(2)
    index = FaceIndex(16)
    vectors = units(rng, 800, 16)
    errors: list[BaseException] = []

    def writer(part: int) -> None:
        try:
            mine = list(range(part * 200, (part + 1) * 200))
            for i in mine:
                index.add([i], vectors[i])
            index.remove(mine[::2])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                sims, ids = index.search(vectors[:4], 5)
                assert ids.shape == (4, 5) and ((ids >= 0) | (ids == -1)).all()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    expected = {i for p in range(4) for i in range(p * 200 + 1, (p + 1) * 200, 2)}
    assert index.ids() == expected and len(index) == 400
    sims, ids = index.search(vectors[1], 1)
    assert ids[0, 0] == 1 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
