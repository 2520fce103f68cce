"""Typed domain errors. Each carries its HTTP status and a stable machine-readable ``code``.

The HTTP layer (``service.api.problems``) turns them into RFC 9457 problem+json responses; the domain
never builds responses itself.
"""

from __future__ import annotations

from typing import Any


class FaceGateError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class UnsupportedImage(FaceGateError):
    status, code, title = 415, "unsupported_image", "Unsupported image format"


class CorruptImage(FaceGateError):
    status, code, title = 422, "corrupt_image", "Corrupt or truncated image"


class ImageTooLarge(FaceGateError):
    status, code, title = 413, "image_too_large", "Image too large"


class InvalidRequest(FaceGateError):
    status, code, title = 422, "invalid_request", "Invalid request"


class NoFace(FaceGateError):
    status, code, title = 422, "no_face", "No face found"


class MultipleFaces(FaceGateError):
    status, code, title = 422, "multiple_faces", "More than one face"


class FaceIndexOutOfRange(FaceGateError):
    status, code, title = 422, "face_index_out_of_range", "No face at that face_index"


class FaceBoxNoMatch(FaceGateError):
    status, code, title = 422, "face_box_no_match", "No detected face matches face_box"


class FaceChoiceConflict(FaceGateError):
    status, code, title = 422, "face_choice_conflict", "Both face_index and face_box given"


class LowQuality(FaceGateError):
    status, code, title = 422, "low_quality", "Face quality too low"


class PersonNotFound(FaceGateError):
    status, code, title = 404, "person_not_found", "Person not found"


class AlreadyEnrolled(FaceGateError):
    status, code, title = 409, "already_enrolled", "Person already enrolled"


class DuplicateFace(FaceGateError):
    status, code, title = 409, "duplicate_face", "Face already enrolled as another person"


class Unauthorized(FaceGateError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(FaceGateError):
    status, code, title = 403, "forbidden", "API key lacks the scope"


class ThresholdNotAllowed(Forbidden):
    code, title = "threshold_not_allowed", "Only an admin key may lower the threshold"


class LastAdminKey(FaceGateError):
    status, code, title = 409, "last_admin_key", "The last admin key cannot be revoked"


class OwnKey(FaceGateError):
    status, code, title = 409, "own_key", "A key cannot revoke itself"


class NotFound(FaceGateError):
    status, code, title = 404, "not_found", "Not found"


class InvalidFigureName(FaceGateError):
    status, code, title = 422, "invalid_figure_name", "Not a figure file name"


class FigureNotFound(FaceGateError):
    status, code, title = 404, "figure_not_found", "No such figure"


class ModelError(FaceGateError):
    """A model file or card that cannot be used (hash mismatch, missing file, bad card)."""

    status, code, title = 500, "model_error", "Model unusable"


class NotReady(FaceGateError):
    status, code, title = 503, "not_ready", "Service not ready"
