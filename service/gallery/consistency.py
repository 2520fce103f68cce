"""The full comparison of a gallery's index with the database: which embeddings differ.

``compare`` is plain code over what the gallery read under its write lock: the database's
embedding ids (with their person) for one model version and the index's ids and maps. It is
the expensive check (every id, O(N)); readiness uses counts instead (``service.consistency``).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

SAMPLE = 20  # at most this many ids named per kind of difference


@dataclass(frozen=True)
class ConsistencyReport:
    """What the index holds against the database, for one model version."""

    model_version: str
    database: int  # embeddings stored for the version
    indexed: int  # embeddings in the index
    stale: bool  # the gallery itself knows its index is out of date
    missing: list[int] = field(default_factory=list)  # stored, not indexed (first SAMPLE)
    extra: list[int] = field(default_factory=list)  # indexed, not stored (first SAMPLE)
    misattributed: list[int] = field(default_factory=list)  # indexed under another person
    missing_total: int = 0
    extra_total: int = 0
    misattributed_total: int = 0

    @property
    def consistent(self) -> bool:
        return not self.stale and not (self.missing_total or self.extra_total or self.misattributed_total)

    @property
    def mismatched(self) -> int:
        """Embeddings that differ (missing + extra + misattributed)."""
        return self.missing_total + self.extra_total + self.misattributed_total


def compare(
    model_version: str,
    stored: Mapping[int, str],
    index_ids: Set[int],
    by_id: Mapping[int, str],
    by_person: Mapping[str, int],
    stale: bool,
) -> ConsistencyReport:
    """``stored``: database embedding id -> person_id; ``index_ids``: the FAISS index's ids;
    ``by_id``/``by_person``: the gallery's maps (embedding id -> person_id and back)."""
    indexed = set(index_ids)
    missing = sorted(set(stored) - indexed)
    extra = sorted((indexed | set(by_id)) - set(stored))
    wrong = sorted(
        i for i, pid in stored.items() if i in indexed and (by_id.get(i) != pid or by_person.get(pid) != i)
    )
    # a map entry for a person whose stored embedding is another (or none) is also misattributed
    wrong += sorted(
        i for pid, i in by_person.items() if stored.get(i) != pid and i not in extra and i not in wrong
    )
    return ConsistencyReport(
        model_version=model_version,
        database=len(stored),
        indexed=len(indexed),
        stale=stale,
        missing=missing[:SAMPLE],
        extra=extra[:SAMPLE],
        misattributed=wrong[:SAMPLE],
        missing_total=len(missing),
        extra_total=len(extra),
        misattributed_total=len(wrong),
    )
