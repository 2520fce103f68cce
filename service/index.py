"""The FAISS index: exact inner-product search over unit vectors, keyed by embedding ids."""

from __future__ import annotations

import threading

import faiss
import numpy as np


class FaceIndex:
    """``IndexIDMap2(IndexFlatIP)``; inner product of unit vectors is cosine similarity.

    FAISS does not allow a search to run while the index is modified, so every call takes the
    lock; searches are short (exact search over 10^5 vectors takes milliseconds).
    """

    def __init__(self, dim: int) -> None:
        # One query at a time is searched: OpenMP threads only add contention with the web workers.
        faiss.omp_set_num_threads(1)
        self.dim = dim
        self._lock = threading.RLock()
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ids: set[int] = set()

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        v = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        return v

    def add(self, ids, vectors: np.ndarray) -> None:
        ids = np.asarray(list(ids), dtype=np.int64)
        v = self._check(vectors)
        if len(ids) != len(v):
            raise ValueError(f"{len(ids)} ids for {len(v)} vectors")
        with self._lock:
            clash = self._ids.intersection(ids.tolist())
            if clash:
                raise ValueError(f"ids already indexed: {sorted(clash)[:5]}")
            if len(ids):
                self._index.add_with_ids(v, ids)
                self._ids.update(ids.tolist())

    def remove(self, ids) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        with self._lock:
            removed = int(self._index.remove_ids(ids)) if len(ids) else 0
            self._ids.difference_update(ids.tolist())
            return removed

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n, k); empty slots have id -1."""
        v = self._check(vectors)
        with self._lock:
            if not self._ids:
                return np.full((len(v), k), -np.inf, np.float32), np.full((len(v), k), -1, np.int64)
            return self._index.search(v, k)

    def rebuild(self, ids, vectors: np.ndarray) -> None:
        with self._lock:
            self._index.reset()
            self._ids.clear()
            self.add(ids, vectors)

    def ids(self) -> set[int]:
        with self._lock:
            return set(self._ids)

    def __len__(self) -> int:
        with self._lock:
            return self._index.ntotal
