"""Enrolment quality measures: face size, sharpness, head turn and detector confidence."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, get_args

import numpy as np
from PIL import Image

from service.pipeline.face import Face


@dataclass(frozen=True)
class QualityLimits:
    min_eye_distance: float
    min_sharpness: float
    max_yaw: float
    min_detection_score: float


QualityFilter = Literal["none", "low", "medium", "high"]
QUALITY_FILTERS: tuple[str, ...] = get_args(QualityFilter)

# Limits of each quality_filter level, chosen on LFW View 2 by bench/quality_gates.py (README,
# "Enrolment quality"): "medium" (the default) keeps the failure-to-enrol rate at or under 1 % while
# the photos it refuses are falsely rejected at least twice as often as the photos it accepts.
# The service's settings (FACEGATE_MIN_EYE_DISTANCE, ...) override the medium level.
QUALITY_LEVELS: dict[str, QualityLimits] = {
    "none": QualityLimits(min_eye_distance=0.0, min_sharpness=0.0, max_yaw=1.0, min_detection_score=0.0),
    "low": QualityLimits(min_eye_distance=16.0, min_sharpness=8.0, max_yaw=0.999, min_detection_score=0.8),
    "medium": QualityLimits(
        min_eye_distance=24.0, min_sharpness=12.0, max_yaw=0.99, min_detection_score=0.95
    ),
    "high": QualityLimits(min_eye_distance=30.0, min_sharpness=20.0, max_yaw=0.85, min_detection_score=0.993),
}


def quality_levels(medium: QualityLimits) -> dict[str, QualityLimits]:
    """Every level's limits, with ``medium`` as configured (the settings)."""
    return {**QUALITY_LEVELS, "medium": replace(medium)}


def limits_for(levels: dict[str, QualityLimits], level: str) -> QualityLimits:
    try:
        return levels[level]
    except KeyError:
        raise ValueError(f"unknown quality_filter {level!r}; valid: {', '.join(QUALITY_FILTERS)}") from None


@dataclass(frozen=True)
class QualityReport:
    eye_distance: float
    sharpness: float
    yaw: float
    detection_score: float
    problems: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "eye_distance": round(self.eye_distance, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 3),
            "detection_score": round(self.detection_score, 4),
        }


def sharpness(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the crop's luminance, resized to 112x112.

    Resizing first makes the figure comparable across models whose crops differ in size.
    """
    gray = (
        Image.fromarray(np.ascontiguousarray(crop)).convert("L").resize((112, 112), Image.Resampling.BILINEAR)
    )
    g = np.asarray(gray, dtype=np.float64)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def yaw_asymmetry(landmarks: np.ndarray) -> float:
    """How far the head is turned, from the landmarks: 0 frontal, about 1 in full profile.

    The nose tip is projected on the line through the eyes; the figure is how far that projection
    sits from the eyes' midpoint, relative to half the inter-eye distance.
    """
    left, right, nose = (np.asarray(landmarks[i], dtype=np.float64) for i in range(3))
    axis = right - left
    half = float(np.linalg.norm(axis)) / 2.0
    if half < 1e-6:
        return 1.0
    t = float(np.dot(nose - left, axis) / np.dot(axis, axis))
    offset = abs(t - 0.5) * 2.0 * half
    return min(offset / half, 1.0)


def assess(face: Face, crop: np.ndarray, limits: QualityLimits) -> QualityReport:
    eye = face.eye_distance
    sharp = sharpness(crop)
    yaw = yaw_asymmetry(face.landmarks)
    problems: list[dict] = []
    if eye < limits.min_eye_distance:
        problems.append(
            {
                "reason": "face_too_small",
                "message": f"the face is too small: {eye:.0f} px between the eyes, "
                f"{limits.min_eye_distance:.0f} needed",
                "value": round(eye, 1),
                "limit": limits.min_eye_distance,
            }
        )
    if sharp < limits.min_sharpness:
        problems.append(
            {
                "reason": "too_blurred",
                "message": f"the face is too blurred: sharpness {sharp:.1f}, {limits.min_sharpness:.1f} needed",
                "value": round(sharp, 1),
                "limit": limits.min_sharpness,
            }
        )
    if yaw > limits.max_yaw:
        problems.append(
            {
                "reason": "turned_too_far",
                "message": f"the head is turned too far: yaw {yaw:.2f}, at most {limits.max_yaw:.2f} allowed",
                "value": round(yaw, 3),
                "limit": limits.max_yaw,
            }
        )
    if face.score < limits.min_detection_score:
        problems.append(
            {
                "reason": "low_confidence",
                "message": f"the face was detected with low confidence: {face.score:.2f}, "
                f"{limits.min_detection_score:.2f} needed",
                "value": round(face.score, 4),
                "limit": limits.min_detection_score,
            }
        )
    return QualityReport(eye, sharp, yaw, face.score, problems)
