"""A liveness token on /verify and /identify: required for some keys, bound to the live face.

``required``: FACEGATE_LIVENESS_REQUIRED_SCOPES lists scopes; a key holding one of them (as its
own scope: an admin key is held to it only when ``admin`` is listed) must send a token.
``redeem``: the token is used up, then the probe photo's face must match the token's live face at
/verify's configured threshold (strict, never the client's), so that an attacker who passed the
check with their own face cannot have a victim's photo verified or identified with that token.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.decisions import verify_threshold
from service.gallery import audit
from service.gallery.audit import Caller
from service.liveness.errors import LivenessRequired, LivenessTokenMismatch
from service.liveness.tokens import TokenStore
from service.model_card import Calibration
from service.settings import Settings


def required_scopes(settings: Settings) -> frozenset[str]:
    return frozenset(s.strip() for s in settings.liveness_required_scopes.split(",") if s.strip())


def require(settings: Settings, caller: Caller, token: str | None) -> None:
    """Refuse (403 ``liveness_required``) a request without a token from a key that needs one."""
    held = caller.scopes & required_scopes(settings)
    if token is None and held:
        raise LivenessRequired(
            f"keys with the {', '.join(sorted(held))} scope must send a liveness_token from "
            "POST /liveness/check (FACEGATE_LIVENESS_REQUIRED_SCOPES)",
            scopes=sorted(held),
        )


def redeem(
    token: str | None,
    embedding: np.ndarray,
    *,
    settings: Settings,
    calibration: Calibration,
    model_version: str,
    sessions,
    caller: Caller,
    action: str,
    person_id: str | None = None,
) -> dict[str, Any]:
    """The audit detail of the liveness part of a decision ({"liveness": ...}); the token, when
    sent, is used up and must be the probe face's (else 403, recorded in the audit trail)."""
    if token is None:
        return {"liveness": "none"}
    store = TokenStore(sessions, settings.liveness_token_ttl)
    try:
        live, challenge_id = store.redeem(token, caller, model_version)
    except Exception as exc:
        _refused(sessions, caller, action, person_id, model_version, getattr(exc, "code", "error"))
        raise
    threshold = verify_threshold(calibration, settings.target_far, settings.verify_threshold)
    similarity = float(np.dot(embedding, live))
    score = calibration.score(similarity)
    if score < threshold.score:
        _refused(sessions, caller, action, person_id, model_version, "liveness_token_mismatch", score)
        raise LivenessTokenMismatch(
            f"the photo's face does not match the live face the token was issued for (score {score:.3f}, "
            f"{threshold.score:.3f} needed): the token was spent",
            score=round(score, 4),
            threshold=round(threshold.score, 4),
        )
    return {"liveness": {"challenge_id": challenge_id, "score": round(score, 4)}}


def _refused(sessions, caller, action, person_id, model_version, code, score=None) -> None:
    audit.record(
        sessions,
        audit.row(
            caller,
            action,
            person_id=person_id,
            result=str(code)[:32],
            score=score,
            model_version=model_version,
            detail={"liveness": {"refused": code}},
        ),
    )
