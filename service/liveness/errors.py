"""Liveness refusals, as typed domain errors (problem+json through ``service.api.problems``)."""

from __future__ import annotations

from service.errors import FaceGateError, Forbidden


class ChallengeNotFound(FaceGateError):
    status, code, title = 404, "challenge_not_found", "No such liveness challenge"


class ChallengeUsed(FaceGateError):
    status, code, title = 409, "challenge_used", "Liveness challenge already used"


class ChallengeExpired(FaceGateError):
    status, code, title = 409, "challenge_expired", "Liveness challenge expired"


class TooManyFrames(FaceGateError):
    status, code, title = 422, "too_many_frames", "Too many or too few liveness frames"


class LivenessRequired(Forbidden):
    code, title = "liveness_required", "A liveness token is required"


class LivenessTokenInvalid(Forbidden):
    code, title = "liveness_token_invalid", "Liveness token unknown, used or expired"


class LivenessTokenMismatch(Forbidden):
    code, title = "liveness_token_mismatch", "The photo's face is not the live face of the token"
