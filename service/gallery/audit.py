"""Audit rows: who did what, when, with which result. They never hold biometric data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.gallery.tables import AuditEvent

ACTIONS = frozenset(
    {
        "enroll",
        "replace",
        "verify",
        "identify",
        "compare",  # POST /compare: two photos, nobody enrolled; the row is all that is kept
        "delete",
        "export",
        "key_create",
        "key_revoke",
        "model_activate",
        "calibrate",
        "suspend",  # service.gallery.status: a person is suspended, reactivated or given an expiry
        "reactivate",
        "person_update",
        "people_sync",  # facegate people sync: one summary row beside each person's own
        "audit_purge",  # service.audit_retention: rows past FACEGATE_AUDIT_RETENTION_DAYS deleted
        "liveness",  # service.liveness.check: a liveness check, its steps and reasons (no landmarks)
    }
)
# Keys that would smuggle a face into the audit trail; refused anywhere inside ``detail``.
BIOMETRIC_KEYS = frozenset(
    {"embedding", "embeddings", "vector", "crop", "image", "png", "photo", "landmarks"}
)


def _check_detail(value: Any, path: str = "detail") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() in BIOMETRIC_KEYS:
                raise ValueError(f"{path}.{k}: audit rows must not hold biometric data")
            _check_detail(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_detail(v, f"{path}[{i}]")
    elif isinstance(value, bytes | bytearray):
        raise ValueError(f"{path}: audit rows hold no binary data")


@dataclass(frozen=True)
class Caller:
    """Who asked: the API key (id and name) and its scopes. ``admin`` implies every scope."""

    key_id: int | None
    key_name: str
    scopes: frozenset[str]
    collection: str | None = None  # the collection the key is bound to (service.collection_index)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes


def row(
    caller: Caller,
    action: str,
    *,
    person_id: str | None = None,
    result: str = "ok",
    score: float | None = None,
    model_version: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """One validated audit row, to be added to the transaction of the operation it records."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; valid: {', '.join(sorted(ACTIONS))}")
    detail = dict(detail or {})
    _check_detail(detail)
    return AuditEvent(
        action=action,
        key_id=caller.key_id,
        key_name=caller.key_name,
        person_id=person_id,
        result=result,
        score=None if score is None else float(score),
        model_version=model_version,
        detail=detail,
    )


def record(sessions: sessionmaker[Session], event: AuditEvent) -> None:
    """Append one row in its own transaction: for operations that change nothing else (a verify,
    an identify). Operations that write add their row to their own transaction instead."""
    with sessions.begin() as s:
        s.add(event)
