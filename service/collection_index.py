"""One FAISS index per collection, presented as one index of every embedding.

A person belongs to one or more collections (an organisation's sites and doors); a person in no
named collection is in ``default``. ``/identify`` and the duplicate check search only the
collection(s) asked for, and each collection's 1:N threshold comes from its own size.

``CollectionIndex`` keeps a ``FaceIndex`` per collection: exact search up to ``exact_max``
embeddings (``FACEGATE_EXACT_INDEX_MAX``), an HNSW graph with exact re-ranking above it
(``service.approx_index.SizedIndex``; each collection switches by its own size). An embedding held by several
collections is stored in each of their indexes (a door's 200 people are searched by an index of
200, not filtered out of 10^6); an embedding only in ``default``, the common case, is stored once
and costs no membership entry. Seen from outside (``add``, ``remove``, ``ids``, ``len``,
``vector``) it is the set of every embedding, as the gallery's consistency and readiness checks
expect; ``search`` takes the collections to search.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np

from service.approx_index import SizedIndex
from service.index import FaceIndex

DEFAULT = "default"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DEFAULT_ONLY: frozenset[str] = frozenset({DEFAULT})


def memberships(names: Iterable[str] | None) -> frozenset[str]:
    """The collections a person with these named collections is in (none: ``default``)."""
    wanted = frozenset(names or ())
    return wanted or DEFAULT_ONLY


class CollectionIndex:
    """Per-collection exact indexes keyed by embedding ids (see the module docstring).

    Writes come one at a time (the gallery's write lock); searches may run alongside them.
    """

    def __init__(self, default: FaceIndex, exact_max: int | None = None) -> None:
        self.dim = default.dim
        self.threads = default.threads
        sized = default if isinstance(default, SizedIndex) else None
        # every collection's index is exact up to exact_max embeddings, approximate above
        self.exact_max = exact_max if exact_max is not None else (sized.exact_max if sized is not None else 0)
        self.background = sized.background if sized is not None else True
        if self.exact_max and (sized is None or sized.exact_max != self.exact_max):
            fresh = self._new()
            if len(default):
                fresh.restore(default.serialize())
            default = fresh
        self._lock = threading.Lock()
        self._indexes: dict[str, FaceIndex] = {DEFAULT: default}
        self._member: dict[int, frozenset[str]] = {}  # only embeddings not in default alone
        self._outside_default = 0  # embeddings in _member whose collections exclude default

    def _new(self) -> SizedIndex:
        return SizedIndex(self.dim, self.threads, self.exact_max, background=self.background)

    def kinds(self) -> dict[str, str]:
        """{collection: the index answering its searches} (``SizedIndex.kind``)."""
        with self._lock:
            indexes = dict(self._indexes)
        return {n: ix.kind() if isinstance(ix, SizedIndex) else "exact" for n, ix in indexes.items()}

    def index_of(self, name: str) -> FaceIndex | None:
        """The index of one collection (None when unknown)."""
        with self._lock:
            return self._indexes.get(name)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the approximate indexes being built; True when none is left."""
        with self._lock:
            indexes = list(self._indexes.values())
        return all(ix.wait(timeout) for ix in indexes if isinstance(ix, SizedIndex))

    # ---- collections ----

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._indexes)

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._indexes

    def declare(self, names: Iterable[str]) -> None:
        """Make these collections known (empty until someone is added)."""
        with self._lock:
            for name in names:
                if name not in self._indexes:
                    self._indexes[name] = self._new()

    def collections_of(self, id_: int) -> frozenset[str]:
        return self._member.get(id_, DEFAULT_ONLY)

    def ids_in(self, name: str) -> set[int]:
        with self._lock:
            index = self._indexes.get(name)
        return set() if index is None else index.ids()

    def count(self, names: Collection[str], among: Iterable[int] | None = None) -> int:
        """Distinct embeddings in any of ``names`` (only those in ``among`` when given)."""
        wanted = frozenset(names)
        if among is not None:
            return sum(1 for i in among if self.collections_of(i) & wanted)
        with self._lock:
            indexes = {n: self._indexes[n] for n in wanted if n in self._indexes}
        if len(indexes) <= 1:
            return sum(len(ix) for ix in indexes.values())
        # the largest counted whole; of the others only embeddings not in a larger one already
        ordered = sorted(indexes, key=lambda n: len(indexes[n]), reverse=True)
        total = len(indexes[ordered[0]])
        for k, name in enumerate(ordered[1:], 1):
            before = frozenset(ordered[:k])
            total += sum(1 for i in indexes[name].ids() if not self.collections_of(i) & before)
        return total

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {name: len(ix) for name, ix in self._indexes.items()}

    # ---- the index of every embedding ----

    def _index(self, name: str) -> FaceIndex:
        with self._lock:
            index = self._indexes.get(name)
            if index is None:
                index = self._indexes[name] = self._new()
            return index

    def _remember(self, id_: int, names: frozenset[str]) -> None:
        old = self._member.pop(id_, DEFAULT_ONLY)
        if DEFAULT not in old:
            self._outside_default -= 1
        if names != DEFAULT_ONLY:
            self._member[id_] = names
            if DEFAULT not in names:
                self._outside_default += 1

    def add(
        self, ids: Iterable[int], vectors: np.ndarray, collections: Sequence[frozenset[str]] | None = None
    ) -> None:
        """Add embeddings, each to its collections (None: all to ``default``)."""
        i = np.asarray(list(ids), dtype=np.int64).reshape(-1)
        v = np.asarray(vectors, dtype=np.float32).reshape(len(i), -1) if len(i) else vectors
        groups = [DEFAULT_ONLY] * len(i) if collections is None else [memberships(c) for c in collections]
        if len(groups) != len(i):
            raise ValueError(f"{len(groups)} memberships for {len(i)} ids")
        with self._lock:
            default = self._indexes[DEFAULT]
        clash = [x for x in i.tolist() if x in self._member or x in default]
        if clash:
            raise ValueError(f"ids already indexed: {sorted(clash)[:5]}")
        by_name: dict[str, list[int]] = {}
        for row, names in enumerate(groups):
            for name in names:
                by_name.setdefault(name, []).append(row)
        for name, rows in by_name.items():
            self._index(name).add(i[rows], v[rows])
        for id_, names in zip(i.tolist(), groups):
            self._remember(id_, names)

    def remove(self, ids: Iterable[int]) -> int:
        """Remove these ids from every collection (absent ones are ignored); returns how many."""
        wanted = [int(x) for x in ids]
        by_name: dict[str, list[int]] = {}
        for id_ in wanted:
            for name in self.collections_of(id_):
                by_name.setdefault(name, []).append(id_)
        removed: set[int] = set()
        for name, members in by_name.items():
            with self._lock:
                index = self._indexes.get(name)
            if index is not None:
                removed |= {m for m in members if m in index}
                index.remove(members)
        for id_ in wanted:
            self._remember(id_, DEFAULT_ONLY)
        return len(removed)

    def move(self, id_: int, names: Iterable[str] | None) -> bool:
        """Put an indexed embedding in exactly these collections; False when it is not indexed."""
        vector = self.vector(id_)
        if vector is None:
            return False
        new, old = memberships(names), self.collections_of(id_)
        for name in new - old:
            self._index(name).add([id_], vector[None, :])
        for name in old - new:
            self._index(name).remove([id_])
        self._remember(id_, new)
        return True

    def rebuild(
        self, ids: Iterable[int], vectors: np.ndarray, collections: Sequence[frozenset[str]] | None = None
    ) -> None:
        """Replace the whole content (built aside, then swapped in); known collections stay known."""
        i = np.asarray(list(ids), dtype=np.int64).reshape(-1)
        groups = [DEFAULT_ONLY] * len(i) if collections is None else [memberships(c) for c in collections]
        if len(groups) != len(i):
            raise ValueError(f"{len(groups)} memberships for {len(i)} ids")
        if len(i) and any(g != DEFAULT_ONLY for g in groups):
            rows_of: dict[str, list[int]] = {}
            for row, names in enumerate(groups):
                for name in names:
                    rows_of.setdefault(name, []).append(row)
        else:
            rows_of = {DEFAULT: list(range(len(i)))}
        with self._lock:
            known = set(self._indexes)
        fresh: dict[str, FaceIndex] = {}
        v = np.asarray(vectors, dtype=np.float32)
        for name in known | set(rows_of) | {DEFAULT}:
            index = self._new()
            rows = rows_of.get(name)
            if rows:
                index.rebuild(i[rows], v[rows])
            fresh[name] = index
        member = {int(x): g for x, g in zip(i.tolist(), groups) if g != DEFAULT_ONLY}
        with self._lock:
            self._indexes = fresh
            self._member = member
            self._outside_default = sum(1 for g in member.values() if DEFAULT not in g)

    def serialize(self) -> dict[str, bytes]:
        """{collection: its index as bytes} (for a snapshot; memberships follow from them)."""
        with self._lock:
            indexes = dict(self._indexes)
        return {name: index.serialize() for name, index in indexes.items()}

    def restore(self, parts: Mapping[str, bytes | memoryview]) -> None:
        """Replace the content with a ``serialize`` result (built aside, then swapped in)."""
        fresh: dict[str, FaceIndex] = {}
        for name, data in parts.items():
            restored = self._new()
            restored.restore(data)
            fresh[name] = restored
        fresh.setdefault(DEFAULT, self._new())
        found: dict[int, set[str]] = {}
        for name, index in fresh.items():
            if name != DEFAULT:
                for id_ in index.ids():
                    found.setdefault(id_, set()).add(name)
        in_default = fresh[DEFAULT].ids()
        member = {i: frozenset(n | ({DEFAULT} if i in in_default else set())) for i, n in found.items()}
        with self._lock:
            self._indexes = fresh
            self._member = member
            self._outside_default = sum(1 for g in member.values() if DEFAULT not in g)

    def vector(self, id_: int) -> np.ndarray | None:
        for name in sorted(self.collections_of(id_)):
            with self._lock:
                index = self._indexes.get(name)
            found = None if index is None else index.vector(id_)
            if found is not None:
                return found
        return None

    def ids(self) -> set[int]:
        with self._lock:
            indexes = list(self._indexes.values())
        out: set[int] = set()
        for index in indexes:
            out |= index.ids()
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._indexes[DEFAULT]) + self._outside_default

    # ---- search ----

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        exclude: Collection[int] = (),
        collections: Collection[str] = DEFAULT_ONLY,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n, k), best first, over the union of ``collections``; an
        embedding in several of them appears once. Empty slots: id -1, similarity -inf."""
        with self._lock:
            indexes = [self._indexes[n] for n in sorted(set(collections)) if n in self._indexes]
        if not indexes:
            indexes = [self._new()]  # validates the query, answers nothing
        if len(indexes) == 1:
            return indexes[0].search(vectors, k, exclude)
        parts = [ix.search(vectors, k, exclude) for ix in indexes]
        sims = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        out_s = np.full((len(sims), k), -np.inf, np.float32)
        out_i = np.full((len(sims), k), -1, np.int64)
        for row in range(len(sims)):
            seen: set[int] = set()
            col = 0
            for j in np.argsort(-sims[row], kind="stable"):
                id_ = int(ids[row, j])
                if id_ < 0 or id_ in seen:
                    continue
                seen.add(id_)
                out_s[row, col], out_i[row, col] = sims[row, j], id_
                col += 1
                if col == k:
                    break
        return out_s, out_i
