"""Plain values the gallery hands out (no ORM objects leave a session)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PersonRecord:
    person_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    model_versions: tuple[str, ...]


@dataclass(frozen=True)
class Candidate:
    person_id: str
    name: str
    similarity: float
