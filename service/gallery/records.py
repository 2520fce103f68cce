"""Plain values the gallery hands out (no ORM object leaves a session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PersonRecord:
    """An enrolled person. Times are timezone-aware UTC.

    ``replaced`` is only ever True on the record ``Gallery.enroll`` returns when it replaced an
    existing person's reference (the audit action is then ``replace``).
    """

    person_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    model_versions: tuple[str, ...]
    crop_size: tuple[int, int] | None  # (width, height) of the aligned reference crop
    replaced: bool = False
    status: str = "active"  # or "suspended" (service.gallery.status)
    suspended_at: datetime | None = None
    expires_at: datetime | None = None
    collections: tuple[str, ...] = ("default",)  # service.collection_index


@dataclass(frozen=True)
class Candidate:
    """One person found by a search; ``similarity`` is the cosine similarity."""

    person_id: str
    name: str
    similarity: float
