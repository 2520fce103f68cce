"""Index choice by size: exact search up to ``exact_max`` embeddings, an HNSW graph above it.

``SizedIndex`` is a ``FaceIndex`` (the exact ``IndexIDMap2(IndexFlatIP)``: every stored
embedding, the ids the consistency and readiness checks see, ``vector``) that also keeps a FAISS
``IndexHNSWFlat`` (inner product) once it holds more than ``exact_max`` embeddings:

* **Search** asks the graph for ``k + RERANK_EXTRA`` candidates and re-scores them exactly against
  the stored embeddings (the exact index's vectors) before answering, so every similarity a
  decision sees is the exact cosine; only which people are candidates is approximate.
* **Deletes and replacements**: HNSW cannot remove a vector, so a removed embedding becomes a
  tombstone (its graph position is cleared in a bitmap that the search's ``IDSelectorBitmap``
  filters, so it never takes a candidate's place) and is removed from the exact index at once; a
  replacement is a removal plus an addition (a new embedding id). When tombstones pass
  ``REBUILD_FRACTION`` of the graph it is rebuilt in the background from the exact index.
* **The switch** is transparent: crossing ``exact_max`` starts a background build (exact search
  answers until the graph is ready, and every change made meanwhile is replayed onto it before it
  is swapped in); shrinking below ``SWITCH_BACK * exact_max`` drops the graph (hysteresis, so a
  gallery at the limit does not rebuild at every enrolment and deletion).
* **Snapshots**: ``serialize`` stores the graph with the exact index (one blob: both in FAISS's
  format, the graph's position-to-id map and its tombstones); ``restore`` takes it back after
  checking that the graph's live ids are the exact index's, and rebuilds the graph in the
  background otherwise (an older snapshot holding the exact index alone, say).

Parameters (``HNSW_M``, ``EF_CONSTRUCTION``, ``EF_SEARCH``) were measured by ``bench/scale.py`` on
face-like embeddings (README "Search at scale"): recall@1 against exact search 0.993 at 10^5
(efSearch 512) but 0.95 at 10^6 (efSearch 1024; 0.994 on queries whose true match is above the
1:N threshold), short of the 0.99 aimed at there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Iterable, Sequence

import faiss
import numpy as np

from service.index import FaceIndex

log = logging.getLogger(__name__)

HNSW_M = 32
EF_CONSTRUCTION = 200
EF_SEARCH = 1024  # bench/scale.py: 512 reaches recall@1 0.99 at 10^5; 1024 gives 0.95 at 10^6 (README)
RERANK_EXTRA = 16  # candidates asked of the graph beyond k, re-scored exactly
REBUILD_FRACTION = 0.2  # tombstones / graph size that start a background rebuild
SWITCH_BACK = 0.9  # below this fraction of exact_max the graph is dropped
MAGIC = b"FACEGATE-SIZED-INDEX-1\n"


class _Graph:
    """An HNSW graph over positions, with each position's embedding id and liveness."""

    def __init__(self, dim: int, m: int, ef_construction: int) -> None:
        self.hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        self.hnsw.hnsw.efConstruction = ef_construction
        self.ids = np.zeros(0, np.int64)  # position -> embedding id
        self.alive = np.zeros(0, np.uint8)  # bitmap over positions (IDSelectorBitmap's layout)
        self.where: dict[int, int] = {}  # live embedding id -> position
        self.dead = 0

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        start = int(self.hnsw.ntotal)
        self.hnsw.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, ids.astype(np.int64)])
        need = (len(self.ids) + 7) // 8
        if len(self.alive) < need:
            self.alive = np.concatenate(
                [self.alive, np.zeros(max(need - len(self.alive), need // 2), np.uint8)]
            )
        for offset, id_ in enumerate(ids.tolist()):
            pos = start + offset
            self.alive[pos >> 3] |= np.uint8(1 << (pos & 7))
            self.where[int(id_)] = pos

    def remove(self, ids: Iterable[int]) -> None:
        for id_ in ids:
            pos = self.where.pop(int(id_), None)
            if pos is not None:
                self.alive[pos >> 3] &= np.uint8(~(1 << (pos & 7)) & 0xFF)
                self.dead += 1

    def tombstone_fraction(self) -> float:
        return self.dead / max(1, int(self.hnsw.ntotal))

    def search(self, v: np.ndarray, want: int, ef: int, exclude: Collection[int]) -> np.ndarray:
        """Candidate embedding ids (n, want), -1 for empty slots; tombstones and ``exclude`` skipped."""
        bitmap = self.alive
        if exclude:
            bitmap = bitmap.copy()
            for id_ in exclude:
                at = self.where.get(int(id_))
                if at is not None:
                    bitmap[at >> 3] &= np.uint8(~(1 << (at & 7)) & 0xFF)
        # FAISS keeps a raw pointer: ``bitmap`` and ``sel`` stay referenced until the search returns
        sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
        params.sel = sel
        params.efSearch = max(ef, want)
        _, pos = self.hnsw.search(v, want, params=params)
        return np.where(pos >= 0, self.ids[np.clip(pos, 0, None)], -1)

    def serialize(self) -> list[bytes]:
        return [
            faiss.serialize_index(self.hnsw).tobytes(),
            self.ids.astype("<i8").tobytes(),
            self.alive.tobytes(),
        ]

    @classmethod
    def restore(cls, parts: Sequence[bytes | memoryview], dim: int) -> _Graph:
        graph = cls.__new__(cls)
        hnsw = faiss.deserialize_index(np.frombuffer(parts[0], np.uint8))
        if not isinstance(hnsw, faiss.IndexHNSWFlat) or hnsw.d != dim:
            raise ValueError(f"not a {dim}-dimensional HNSW graph")
        graph.hnsw = hnsw
        graph.ids = np.frombuffer(parts[1], "<i8").astype(np.int64)
        graph.alive = np.frombuffer(parts[2], np.uint8).copy()
        if len(graph.ids) != hnsw.ntotal or len(graph.alive) * 8 < len(graph.ids):
            raise ValueError("the graph's ids do not match its vectors")
        live = np.unpackbits(graph.alive, bitorder="little")[: len(graph.ids)].astype(bool)
        graph.where = {int(i): int(p) for p, i in zip(np.flatnonzero(live), graph.ids[live].tolist())}
        if len(graph.where) != int(live.sum()):
            raise ValueError("the graph holds an id twice")
        graph.dead = len(graph.ids) - len(graph.where)
        return graph


class SizedIndex(FaceIndex):
    """Exact up to ``exact_max`` embeddings, HNSW plus exact re-ranking above (module docstring).

    ``exact_max`` 0 never builds a graph. ``background`` False builds in the calling thread (for
    tests and tools); ``build_threads`` OpenMP threads build a graph (1: leave the other cores to
    the requests being answered meanwhile).
    """

    def __init__(
        self,
        dim: int,
        threads: int = 1,
        exact_max: int = 0,
        *,
        background: bool = True,
        build_threads: int = 1,
        m: int = HNSW_M,
        ef_construction: int = EF_CONSTRUCTION,
        ef_search: int = EF_SEARCH,
    ) -> None:
        super().__init__(dim, threads)
        if exact_max < 0:
            raise ValueError(f"exact_max must be >= 0, got {exact_max}")
        self._lock = threading.RLock()  # type: ignore[assignment]  # held around FaceIndex's own calls
        self.exact_max = exact_max
        self.background = background
        self.build_threads = build_threads
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self._graph: _Graph | None = None
        self._generation = 0  # bumped by every whole-content change: a build of an older one is dropped
        self._building: threading.Thread | None = None
        self._pending: list[tuple[str, np.ndarray, np.ndarray | None]] | None = None  # changes during a build
        self.builds = 0  # graphs built (for tests and the benchmark)

    # ---- what is in use ----

    def kind(self) -> str:
        """``exact``, ``exact (building hnsw)`` or ``hnsw<M>-ef<efSearch>``."""
        with self._lock:
            if self._graph is not None:
                return f"hnsw{self.m}-ef{self.ef_search}"
            return "exact (building hnsw)" if self._pending is not None else "exact"

    def approximate(self) -> bool:
        with self._lock:
            return self._graph is not None

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a graph build in flight; True when none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._building
            if thread is None:
                return True
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(left)
            if thread.is_alive():
                return False

    # ---- writes ----

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        i, v = self._checked(ids, vectors)
        with self._lock:
            super().add(i, v)
            if self._graph is not None and len(i):
                self._graph.add(i, v)
            if self._pending is not None and len(i):
                self._pending.append(("add", i, v))
            self._settle()

    def remove(self, ids: Iterable[int]) -> int:
        i = np.asarray(list(ids), dtype=np.int64).reshape(-1)
        with self._lock:
            if self._graph is not None:
                self._graph.remove(i.tolist())
            if self._pending is not None and len(i):
                self._pending.append(("remove", i, None))
            removed = super().remove(i)
            self._settle()
            return removed

    def rebuild(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        i, v = self._checked(ids, vectors)
        with self._lock:
            super().rebuild(i, v)
            self._drop()
            self._settle()

    def restore(self, data: bytes | memoryview) -> None:
        view = memoryview(data)  # parts are cut from it without copying
        if bytes(view[: len(MAGIC)]) != MAGIC:  # the exact index alone (a FaceIndex, or below the limit)
            with self._lock:
                super().restore(data)
                self._drop()
                self._settle()
            return
        parts = _unpack(view[len(MAGIC) :])
        if len(parts) != 4:
            raise ValueError("not a SizedIndex snapshot")
        with self._lock:
            super().restore(parts[0])
            self._drop()
            try:
                graph = _Graph.restore(parts[1:], self.dim)
                if set(graph.where) != self._ids:
                    raise ValueError("its live ids are not the exact index's")
            except (ValueError, RuntimeError) as exc:
                log.warning("the snapshot's HNSW graph is not used (rebuilt): %s", exc)
            else:
                self._graph = graph
            self._settle()

    def serialize(self) -> bytes:
        with self._lock:
            exact = super().serialize()
            if self._graph is None:
                return exact
            return MAGIC + _pack([exact, *self._graph.serialize()])

    # ---- search ----

    def search(
        self, vectors: np.ndarray, k: int, exclude: Collection[int] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            graph = self._graph
            if graph is None:
                return super().search(vectors, k, exclude)
            if k < 1:
                raise ValueError(f"k must be at least 1, got {k}")
            v = self._vectors(vectors)
            out_s = np.full((len(v), k), -np.inf, np.float32)
            out_i = np.full((len(v), k), -1, np.int64)
            if not self._ids:
                return out_s, out_i
            if self.threads:
                faiss.omp_set_num_threads(self.threads)
            candidates = graph.search(v, k + RERANK_EXTRA, self.ef_search, exclude)
            for row in range(len(v)):
                found = [int(c) for c in candidates[row] if c >= 0 and int(c) in self._ids]
                if not found:
                    continue
                stored = np.stack([self._index.reconstruct(c) for c in found])  # the exact vectors
                sims = stored @ v[row]
                order = np.argsort(-sims, kind="stable")[:k]
                out_s[row, : len(order)] = sims[order]
                out_i[row, : len(order)] = np.asarray(found, np.int64)[order]
            return out_s, out_i

    # ---- the switch and the background build ----

    def _drop(self) -> None:
        self._graph = None
        self._pending = None
        self._generation += 1

    def _settle(self) -> None:
        """After a change (lock held): start or drop the graph as the size asks."""
        n = len(self._ids)
        if self.exact_max <= 0 or n <= self.exact_max:
            if self._graph is not None and n < SWITCH_BACK * self.exact_max:
                log.info("index back to exact search at %d embeddings", n)
                self._drop()
            if self._graph is None and self._pending is not None and n <= self.exact_max:
                self._drop()  # a build in flight is no longer wanted
            return
        if self._pending is not None:
            return  # a build is in flight
        if self._graph is None or self._graph.tombstone_fraction() > REBUILD_FRACTION:
            self._start_build()

    def _start_build(self) -> None:
        self._pending = []
        generation = self._generation
        n = int(self._index.ntotal)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        vectors = np.asarray(faiss.downcast_index(self._index.index).reconstruct_n(0, n), np.float32)
        if self.background:
            thread = threading.Thread(
                target=self._build, args=(generation, ids, vectors), name="facegate-hnsw-build", daemon=True
            )
            self._building = thread
            thread.start()
        else:
            self._build(generation, ids, vectors)

    def _forget_thread(self) -> None:
        if self._building is threading.current_thread():
            self._building = None

    def _build(self, generation: int, ids: np.ndarray, vectors: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            graph = _Graph(self.dim, self.m, self.ef_construction)
            if self.background:
                faiss.omp_set_num_threads(self.build_threads)  # per calling thread
            graph.add(ids, vectors)
        except Exception:
            log.exception("building the HNSW graph failed; exact search goes on")
            with self._lock:
                if self._generation == generation:
                    self._pending = None
                self._forget_thread()
            return
        with self._lock:
            self._forget_thread()
            if self._generation != generation or self._pending is None:
                return  # the content was replaced, or the graph is no longer wanted
            for op, i, v in self._pending:
                if op == "add":
                    fresh = np.asarray([x not in graph.where for x in i.tolist()])
                    if fresh.any() and v is not None:
                        graph.add(i[fresh], v[fresh])
                else:
                    graph.remove(i.tolist())
            self._pending = None
            self._graph = graph
            self.builds += 1
            log.info(
                "HNSW graph of %d embeddings built in %.1f s (%d tombstones dropped)",
                len(graph.where),
                time.perf_counter() - started,
                len(ids) - len(graph.where),
            )
            self._settle()


def _pack(parts: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


def _unpack(data: memoryview) -> list[memoryview]:
    parts: list[memoryview] = []
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 8], "big")
        offset += 8
        if offset + size > len(data):
            raise ValueError("a truncated SizedIndex snapshot")
        parts.append(data[offset : offset + size])
        offset += size
    return parts
