"""Liveness challenges: drawn at random, stored in the database, each used at most once.

A challenge lives in ``liveness_challenges`` (revision 0004), not in a process, so any replica on
the same database can check it and a restart loses none. ``take`` consumes one with a single
conditional ``UPDATE`` (unused, unexpired, the same key): of two checks racing for one challenge,
on one replica or two, exactly one gets it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import numpy as np
from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.gallery.audit import Caller
from service.gallery.tables import LivenessChallenge, as_utc, utcnow
from service.liveness.errors import ChallengeExpired, ChallengeNotFound, ChallengeUsed
from service.liveness.pose import ROTATIONS, STEPS

MIN_STEPS, MAX_STEPS = 2, 4
ID_PATTERN = r"^lc_[A-Za-z0-9_-]{16,60}$"
PURGE_AFTER = timedelta(hours=1)  # used or expired challenges are kept this long, then deleted


def draw_steps(rng: np.random.Generator | secrets.SystemRandom) -> list[str]:
    """2 to 4 distinct steps in random order, at least one a head rotation (coming closer alone
    moves a flat picture and a head alike)."""
    names = list(STEPS)
    while True:
        if isinstance(rng, np.random.Generator):
            n = int(rng.integers(MIN_STEPS, MAX_STEPS + 1))
            chosen = [names[i] for i in rng.permutation(len(names))[:n]]
        else:
            n = rng.randint(MIN_STEPS, MAX_STEPS)
            chosen = rng.sample(names, n)
        if any(c in ROTATIONS for c in chosen):
            return chosen


@dataclass(frozen=True)
class Challenge:
    id: str
    steps: list[str]
    expires_at: datetime


class ChallengeStore:
    def __init__(self, sessions: sessionmaker[Session], ttl_s: float) -> None:
        self.sessions = sessions
        self.ttl = timedelta(seconds=ttl_s)
        self._random = secrets.SystemRandom()

    def issue(self, caller: Caller) -> Challenge:
        now = utcnow()
        c = Challenge("lc_" + secrets.token_urlsafe(24), draw_steps(self._random), now + self.ttl)
        with self.sessions.begin() as s:
            s.execute(delete(LivenessChallenge).where(LivenessChallenge.expires_at < now - PURGE_AFTER))
            s.add(
                LivenessChallenge(
                    id=c.id, key_id=caller.key_id, steps=c.steps, created_at=now, expires_at=c.expires_at
                )
            )
        return c

    def take(self, challenge_id: str, caller: Caller) -> Challenge:
        """Consume the challenge for a check by ``caller``'s key; refused when unknown (or another
        key's), already used or expired."""
        now = utcnow()
        with self.sessions.begin() as s:
            taken = cast(
                CursorResult,
                s.execute(
                    update(LivenessChallenge)
                    .where(
                        LivenessChallenge.id == challenge_id,
                        LivenessChallenge.used_at.is_(None),
                        LivenessChallenge.expires_at > now,
                        _same_key(caller),
                    )
                    .values(used_at=now)
                ),
            ).rowcount
            row = s.scalar(select(LivenessChallenge).where(LivenessChallenge.id == challenge_id))
        if row is None or (row.key_id != caller.key_id):
            raise ChallengeNotFound(
                "no such liveness challenge for this key: ask POST /liveness/challenge for one",
                challenge_id=challenge_id,
            )
        if not taken:
            if row.used_at is not None:
                raise ChallengeUsed(
                    "this liveness challenge was already used: each is good for one check",
                    challenge_id=challenge_id,
                )
            raise ChallengeExpired(
                f"this liveness challenge expired at {as_utc(row.expires_at).isoformat()}: ask for a new one",
                challenge_id=challenge_id,
                expired_at=as_utc(row.expires_at).isoformat(),
            )
        return Challenge(row.id, list(row.steps), as_utc(row.expires_at))


def _same_key(caller: Caller):
    if caller.key_id is None:
        return LivenessChallenge.key_id.is_(None)
    return LivenessChallenge.key_id == caller.key_id
