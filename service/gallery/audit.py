"""Audit rows: one per enrol, verify, identify, delete and key change."""

from __future__ import annotations

from sqlalchemy.orm import sessionmaker

from service.gallery.tables import AuditEvent


def record(
    sessions: sessionmaker,
    action: str,
    key_id: int | None,
    key_name: str,
    person_id: str | None,
    result: str,
    score: float | None,
    model_version: str | None,
    detail: dict,
) -> None:
    with sessions.begin() as s:
        s.add(
            AuditEvent(
                action=action,
                key_id=key_id,
                key_name=key_name,
                person_id=person_id,
                result=result,
                score=None if score is None else float(score),
                model_version=model_version,
                detail=detail,
            )
        )


def rows_about(sessions: sessionmaker, person_id: str) -> list[dict]:
    with sessions() as s:
        rows = s.query(AuditEvent).filter(AuditEvent.person_id == person_id).order_by(AuditEvent.id).all()
        return [
            {
                "at": r.at.isoformat(),
                "action": r.action,
                "key_name": r.key_name,
                "result": r.result,
                "score": r.score,
                "model_version": r.model_version,
            }
            for r in rows
        ]
