"""API keys: shown once in plaintext, stored as sha256 hashes, looked up by that hash.

Generated keys carry 256 random bits, so an unsalted hash of them cannot be reversed; their first
characters are stored in clear only to tell keys apart in listings. A key the operator chooses
(``FACEGATE_ADMIN_KEY``) must be at least ``MIN_CHOSEN_KEY_LEN`` characters, and nothing of it is
stored in clear: its listing prefix is ``CONFIGURED_PREFIX``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.collection_index import NAME_PATTERN
from service.errors import LastAdminKey, NotFound, OwnKey
from service.gallery.db import write_session
from service.gallery.tables import ApiKey, AuditEvent, as_utc, utcnow

log = logging.getLogger(__name__)

# admin implies the others; metrics reads /metrics and nothing else (a Prometheus scraper's key);
# compare is POST /compare alone: a door's verify key must not become an unlimited face matcher
SCOPES = frozenset({"enroll", "verify", "compare", "metrics", "admin"})
KEY_PREFIX = "fg_"
PREFIX_LEN = 8  # of a generated key, stored in clear for listings: "fg_" and 5 random characters
CONFIGURED_PREFIX = "(configured)"  # the listing prefix of an operator-chosen key
MIN_CHOSEN_KEY_LEN = 32
MAX_KEY_LEN = 256
MAX_NAME = 100
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key
_COLLECTION = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    collection: str | None = None  # bound: searches only this collection

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def validate_scopes(scopes: Iterable[str]) -> frozenset[str]:
    wanted = frozenset(scopes)
    unknown = wanted - SCOPES
    if unknown or not wanted:
        what = f"unknown scopes {sorted(unknown)}" if unknown else "no scope given"
        raise ValueError(f"{what}; valid: {', '.join(sorted(SCOPES))}")
    return wanted


def check_chosen_key(plaintext: str) -> None:
    """Refuse an operator-chosen key too short to resist guessing (or unusable in a header)."""
    if (
        not MIN_CHOSEN_KEY_LEN <= len(plaintext) <= MAX_KEY_LEN
        or not plaintext.isprintable()
        or " " in plaintext
    ):
        raise ValueError(
            f"a chosen API key must be {MIN_CHOSEN_KEY_LEN} to {MAX_KEY_LEN} printable characters without "
            "spaces (for example: python3 -c 'import secrets; print(\"fg_\" + secrets.token_urlsafe(32))')"
        )


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise ValueError(f"a key name must be 1 to {MAX_NAME} characters long")
    return name


def _opt(t: datetime | None) -> datetime | None:
    return None if t is None else as_utc(t)


def _record(k: ApiKey) -> KeyRecord:
    return KeyRecord(
        id=k.id,
        name=k.name,
        prefix=k.prefix,
        scopes=frozenset(k.scopes.split(",")),
        created_at=as_utc(k.created_at),
        last_used_at=_opt(k.last_used_at),
        revoked_at=_opt(k.revoked_at),
        collection=k.collection,
    )


class KeyStore:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def create(
        self, name: str, scopes: set[str], audit: AuditEvent | None = None, collection: str | None = None
    ) -> tuple[str, KeyRecord]:
        """A new key; its plaintext is returned here and never again. ``audit`` is committed with
        it (its detail gains the new key's id). ``collection`` binds it to one collection."""
        wanted, name = validate_scopes(scopes), _name(name)
        if collection is not None and not _COLLECTION.match(collection):
            raise ValueError(f"collection {collection!r} is not a valid collection name")
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        with write_session(self.sessions) as s:
            record = self._insert(s, plaintext, plaintext[:PREFIX_LEN], name, wanted, collection)
            if audit is not None:
                audit.detail = {**(audit.detail or {}), "key_id": record.id}
                s.add(audit)
            s.commit()
        return plaintext, record

    def ensure(self, plaintext: str, name: str, scopes: set[str]) -> KeyRecord:
        """Make sure this exact key exists, is active and has these scopes (FACEGATE_ADMIN_KEY).

        Nothing of the chosen key is stored in clear (a row from before this rule loses its clear
        prefix here)."""
        wanted, name = validate_scopes(scopes), _name(name)
        check_chosen_key(plaintext)
        with write_session(self.sessions) as s:
            key = s.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
            if key is None:
                record = self._insert(s, plaintext, CONFIGURED_PREFIX, name, wanted)
            else:
                if key.revoked_at is not None:
                    log.warning("API key %s (%s) was revoked; re-activated as configured", key.id, key.name)
                key.revoked_at = None
                key.scopes = ",".join(sorted(wanted))
                key.prefix = CONFIGURED_PREFIX
                s.flush()
                record = _record(key)
            s.commit()
        return record

    @staticmethod
    def _insert(
        s: Session,
        plaintext: str,
        prefix: str,
        name: str,
        scopes: frozenset[str],
        collection: str | None = None,
    ) -> KeyRecord:
        key = ApiKey(
            name=name,
            prefix=prefix,
            key_hash=hash_key(plaintext),
            scopes=",".join(sorted(scopes)),
            created_at=utcnow(),
            collection=collection,
        )
        s.add(key)
        s.flush()
        return _record(key)

    def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones included, oldest first."""
        with self.sessions() as s:
            return [_record(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def get(self, key_id: int | None) -> KeyRecord:
        with self.sessions() as s:
            key = s.get(ApiKey, key_id) if key_id is not None else None
            if key is None:
                raise NotFound(f"no API key {key_id}", key_id=key_id)
            return _record(key)

    def revoke(self, key_id: int, by_key_id: int | None = None, audit: AuditEvent | None = None) -> None:
        """Revoke a key (revoking a revoked key changes nothing), with ``audit`` in the same
        transaction. NotFound when there is none; refused (409) for the presenting key
        ``by_key_id`` itself and for the last active admin key, so nobody locks everyone out."""
        with write_session(self.sessions) as s:
            key = s.get(ApiKey, key_id)
            if key is None:
                raise NotFound(f"no API key {key_id}", key_id=key_id)
            if key.revoked_at is None:
                if key.id == by_key_id:
                    raise OwnKey(
                        "a key cannot revoke itself: revoke it with another admin key", key_id=key_id
                    )
                if "admin" in key.scopes.split(",") and self._active_admins(s) <= 1:
                    raise LastAdminKey(
                        "this is the last active admin key: create another admin key first", key_id=key_id
                    )
                key.revoked_at = utcnow()
            if audit is not None:
                audit.detail = {**(audit.detail or {}), "key_id": key_id}
                s.add(audit)
            s.commit()

    @staticmethod
    def _active_admins(s: Session) -> int:
        active = s.scalars(select(ApiKey.scopes).where(ApiKey.revoked_at.is_(None)))
        return sum("admin" in scopes.split(",") for scopes in active)

    def authenticate(self, plaintext: str) -> KeyRecord | None:
        """The active key with this plaintext, or None, looked up by its hash (unique, indexed);
        the stored hash is compared again in constant time."""
        if not plaintext or len(plaintext) > MAX_KEY_LEN or "\x00" in plaintext:
            return None
        digest = hash_key(plaintext)
        with self.sessions() as s:
            match = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if (
                match is None
                or not hmac.compare_digest(match.key_hash, digest)
                or match.revoked_at is not None
            ):
                return None
            record = _record(match)
        now = utcnow()
        if record.last_used_at is None or now - record.last_used_at > _TOUCH_EVERY:
            with self.sessions.begin() as s:  # a single UPDATE: no read before the write
                s.execute(update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now))
        return record

    def count_active(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))) or 0
