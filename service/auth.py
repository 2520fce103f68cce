"""API keys: created once in plaintext, stored as sha256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import sessionmaker

from service.errors import NotFound
from service.gallery.tables import ApiKey, utcnow

SCOPES = frozenset({"enroll", "verify", "admin"})
PREFIX_LEN = 8
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is updated at most this often per key


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _hash(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _scopes(scopes: set[str]) -> frozenset[str]:
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(f"unknown or missing scopes {sorted(unknown)}; valid: {', '.join(sorted(SCOPES))}")
    return frozenset(scopes)


def _record(k: ApiKey) -> KeyRecord:
    return KeyRecord(
        k.id, k.name, k.prefix, frozenset(k.scopes.split(",")), k.created_at, k.last_used_at, k.revoked_at
    )


class KeyStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self.sessions = sessions

    def _insert(self, plaintext: str, name: str, scopes: frozenset[str]) -> KeyRecord:
        with self.sessions.begin() as s:
            key = ApiKey(
                name=name,
                prefix=plaintext[:PREFIX_LEN],
                key_hash=_hash(plaintext),
                scopes=",".join(sorted(scopes)),
            )
            s.add(key)
            s.flush()
            return _record(key)

    def create(self, name: str, scopes: set[str]) -> tuple[str, KeyRecord]:
        plaintext = "fg_" + secrets.token_urlsafe(32)
        return plaintext, self._insert(plaintext, name, _scopes(scopes))

    def ensure(self, plaintext: str, name: str, scopes: set[str]) -> KeyRecord:
        """Make sure this exact key exists and is active (for FACEGATE_ADMIN_KEY)."""
        if len(plaintext) < 16:
            raise ValueError("an API key must be at least 16 characters long")
        with self.sessions.begin() as s:
            key = s.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(plaintext)))
            if key is not None:
                key.revoked_at = None
                key.scopes = ",".join(sorted(_scopes(scopes)))
                s.flush()
                return _record(key)
        return self._insert(plaintext, name, _scopes(scopes))

    def list(self) -> list[KeyRecord]:
        with self.sessions() as s:
            return [_record(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def get(self, key_id: int | None) -> KeyRecord:
        with self.sessions() as s:
            key = s.get(ApiKey, key_id) if key_id is not None else None
            if key is None:
                raise NotFound(f"no API key {key_id}")
            return _record(key)

    def revoke(self, key_id: int) -> None:
        with self.sessions.begin() as s:
            key = s.get(ApiKey, key_id)
            if key is None:
                raise NotFound(f"no API key {key_id}")
            if key.revoked_at is None:
                key.revoked_at = utcnow()

    def authenticate(self, plaintext: str) -> KeyRecord | None:
        digest = _hash(plaintext)
        with self.sessions() as s:
            candidates = s.scalars(select(ApiKey).where(ApiKey.prefix == plaintext[:PREFIX_LEN])).all()
            match = None
            for k in candidates:
                if hmac.compare_digest(k.key_hash, digest):
                    match = k
            if match is None or match.revoked_at is not None:
                return None
            record = _record(match)
        now = utcnow()
        last = record.last_used_at
        if (
            last is None
            or (last.tzinfo is None and now.replace(tzinfo=None) - last > _TOUCH_EVERY)
            or (last.tzinfo is not None and now - last > _TOUCH_EVERY)
        ):
            with self.sessions.begin() as s:
                s.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now))
        return record

    def count_active(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))) or 0
