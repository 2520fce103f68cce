"""The FAISS index: exact inner-product search over unit vectors, keyed by embedding ids."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

import faiss
import numpy as np


class FaceIndex:
    """``IndexIDMap2(IndexFlatIP)``: the inner product of unit vectors is their cosine similarity.

    FAISS does not allow a search while the index is being modified, so every call holds one
    lock; an exact search over 10^5 vectors takes milliseconds, so readers wait little.
    ``rebuild`` builds the new index aside and swaps it in, so a failed rebuild changes nothing.

    A search runs on ``threads`` OpenMP threads (0: FAISS's default, all cores). The service
    answers requests on many threads at once, so one thread per search is the default: on a busy
    2-core machine it is ten times faster than letting each single-query search fork across the
    cores. OpenMP's thread count is per calling thread, hence it is set at each search.
    """

    def __init__(self, dim: int, threads: int = 1) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.dim = dim
        self.threads = threads
        self._lock = threading.Lock()
        self._index = self._empty()
        self._ids: set[int] = set()

    def _empty(self) -> faiss.IndexIDMap2:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _vectors(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {np.shape(vectors)}")
        if not np.isfinite(v).all():
            raise ValueError("vectors must be finite")
        return np.ascontiguousarray(v)

    def _checked(self, ids: Iterable[int], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.asarray(list(ids), dtype=np.int64).reshape(-1)
        v = self._vectors(vectors) if len(i) else np.zeros((0, self.dim), np.float32)
        if len(i) != len(v):
            raise ValueError(f"{len(i)} ids for {len(v)} vectors")
        if (i < 0).any():
            raise ValueError("ids must be non-negative")
        if len(np.unique(i)) != len(i):
            raise ValueError("ids must be distinct")
        return i, v

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        i, v = self._checked(ids, vectors)
        with self._lock:
            clash = self._ids.intersection(i.tolist())
            if clash:
                raise ValueError(f"ids already indexed: {sorted(clash)[:5]}")
            if len(i):
                self._index.add_with_ids(v, i)
                self._ids.update(i.tolist())

    def remove(self, ids: Iterable[int]) -> int:
        """Remove these ids (absent ones are ignored); returns how many were removed."""
        i = np.asarray(list(ids), dtype=np.int64).reshape(-1)
        with self._lock:
            removed = int(self._index.remove_ids(i)) if len(i) else 0  # type: ignore[arg-type]
            self._ids.difference_update(i.tolist())
            return removed

    def search(
        self, vectors: np.ndarray, k: int, exclude: Collection[int] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n, k), best first; empty slots have id -1 and similarity -inf.

        Ids in ``exclude`` are skipped by FAISS itself (an ``IDSelector``), so they never take
        one of the ``k`` places."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        v = self._vectors(vectors)
        params = None
        if exclude:
            # FAISS keeps raw pointers: both selectors stay referenced (locals) until the search returns
            batch = faiss.IDSelectorBatch(np.asarray(list(exclude), np.int64))
            skip = faiss.IDSelectorNot(batch)
            params = faiss.SearchParameters()
            params.sel = skip
        with self._lock:
            if not self._ids:
                return np.full((len(v), k), -np.inf, np.float32), np.full((len(v), k), -1, np.int64)
            if self.threads:
                faiss.omp_set_num_threads(self.threads)
            sims, ids = self._index.search(v, k, params=params)
        sims[ids < 0] = -np.inf
        return sims, ids

    def vector(self, id_: int) -> np.ndarray | None:
        """The stored vector for ``id_``, or None when it is not indexed."""
        with self._lock:
            if id_ not in self._ids:
                return None
            return np.asarray(self._index.reconstruct(int(id_)), dtype=np.float32)

    def rebuild(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Replace the whole content (validated and built first, then swapped in)."""
        i, v = self._checked(ids, vectors)
        fresh = self._empty()
        if len(i):
            fresh.add_with_ids(v, i)
        with self._lock:
            self._index = fresh
            self._ids = set(i.tolist())

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._ids)

    def __contains__(self, id_: object) -> bool:
        with self._lock:
            return id_ in self._ids

    def serialize(self) -> bytes:
        """The whole index as bytes (FAISS's own format: ids and vectors), for a snapshot."""
        with self._lock:
            return faiss.serialize_index(self._index).tobytes()

    def restore(self, data: bytes | memoryview) -> None:
        """Replace the content with a ``serialize`` result (checked first, then swapped in)."""
        fresh = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        if not isinstance(fresh, faiss.IndexIDMap2) or fresh.d != self.dim:
            raise ValueError(f"not an exact {self.dim}-dimensional FaceIndex")
        ids = set(faiss.vector_to_array(fresh.id_map).tolist())
        if len(ids) != fresh.ntotal:
            raise ValueError("the index's ids do not match its vectors")
        with self._lock:
            self._index = fresh
            self._ids = ids

    def __len__(self) -> int:
        with self._lock:
            return int(self._index.ntotal)
