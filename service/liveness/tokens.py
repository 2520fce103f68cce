"""Liveness tokens: what a passed check hands back, redeemed once by /verify or /identify.

A token is ``lt_`` and 256 random bits, shown once; ``liveness_tokens`` (revision 0004) stores the
SHA-256 of it, never the token itself, with the live face's embedding sealed like a gallery
template (``service.gallery.cipher``; the associated data names the row, so an envelope moved to
another row does not open). ``redeem`` consumes a token with one conditional ``UPDATE`` (unused,
unexpired, the key that passed the check): a token authorises one decision, on whichever replica.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import cast

import numpy as np
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.gallery import cipher
from service.gallery.audit import Caller
from service.gallery.tables import LivenessToken, as_utc, utcnow
from service.liveness.errors import LivenessTokenInvalid

PREFIX = "lt_"
PATTERN = r"^lt_[A-Za-z0-9_-]{20,80}$"
PURGE_AFTER = timedelta(hours=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _context(digest: str, model_version: str) -> bytes:
    return b"liveness_tokens.embedding:" + digest.encode() + b":" + model_version.encode()


class TokenStore:
    def __init__(self, sessions: sessionmaker[Session], ttl_s: float) -> None:
        self.sessions = sessions
        self.ttl = timedelta(seconds=ttl_s)

    def issue(
        self, embedding: np.ndarray, model_version: str, challenge_id: str, score: float, caller: Caller
    ) -> tuple[str, float]:
        """A new token for the live face ``embedding``; returns it and its lifetime in seconds."""
        token = PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        now = utcnow()
        raw = np.asarray(embedding, dtype="<f4").tobytes()
        with self.sessions.begin() as s:
            s.execute(delete(LivenessToken).where(LivenessToken.expires_at < now - PURGE_AFTER))
            s.add(
                LivenessToken(
                    token_hash=digest,
                    challenge_id=challenge_id,
                    key_id=caller.key_id,
                    model_version=model_version,
                    embedding=cipher.of(s).seal(raw, _context(digest, model_version)),
                    score=float(score),
                    created_at=now,
                    expires_at=now + self.ttl,
                )
            )
        return token, self.ttl.total_seconds()

    def redeem(self, token: str, caller: Caller, model_version: str) -> tuple[np.ndarray, str]:
        """The live face's embedding and the challenge it passed; the token is used up here.

        Refused (``liveness_token_invalid``, with the reason) when unknown or another key's, used,
        expired, or issued under another model version than the one answering now."""
        digest = token_hash(token)
        now = utcnow()
        with self.sessions.begin() as s:
            same_key = (
                LivenessToken.key_id.is_(None)
                if caller.key_id is None
                else LivenessToken.key_id == caller.key_id
            )
            result = cast(
                CursorResult,
                s.execute(
                    update(LivenessToken)
                    .where(
                        LivenessToken.token_hash == digest,
                        LivenessToken.used_at.is_(None),
                        LivenessToken.expires_at > now,
                        same_key,
                    )
                    .values(used_at=now)
                ),
            )
            row = s.scalar(select(LivenessToken).where(LivenessToken.token_hash == digest))
            if row is None or row.key_id != caller.key_id:
                raise LivenessTokenInvalid(
                    "the liveness token is unknown to this key: pass POST /liveness/check for one",
                    reason="unknown",
                )
            if not result.rowcount:
                used = row.used_at is not None
                raise LivenessTokenInvalid(
                    "the liveness token was already used: each authorises one decision"
                    if used
                    else f"the liveness token expired at {as_utc(row.expires_at).isoformat()}",
                    reason="used" if used else "expired",
                )
            if row.model_version != model_version:
                raise LivenessTokenInvalid(
                    f"the liveness token was issued under model {row.model_version}; {model_version} "
                    "answers now: pass a new check",
                    reason="model_changed",
                )
            raw = cipher.of(s).open(row.embedding, _context(digest, row.model_version))
            return np.frombuffer(raw, dtype="<f4").astype(np.float32), row.challenge_id
