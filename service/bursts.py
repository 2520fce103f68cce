"""Bursts: several frames of one moment (2 to 5 photos from a door camera); the best face decides.

A frame's face is ranked by the enrolment quality measures (``service.pipeline.quality``): first
by how many of them fail the ``medium`` gate (face too small, too blurred, turned too far, low
detector confidence), then by how frontal it is (yaw). The face ranked first is compared; the
others are not used. ``bench/bursts.py`` measures what this gains over the first frame on LFW
people with several photos, and what fusing the frames' embeddings would gain instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.pipeline.quality import QualityLimits

MAX_FRAMES = 5
FRAME_NAMES = ("image", *(f"image_{i}" for i in range(2, MAX_FRAMES + 1)))  # image, image_2 ... image_5


def failed(
    eye_distance: float, sharpness: float, yaw: float, detection_score: float, limits: QualityLimits
) -> int:
    """How many quality measures fail ``limits``."""
    return (
        int(eye_distance < limits.min_eye_distance)
        + int(sharpness < limits.min_sharpness)
        + int(yaw > limits.max_yaw)
        + int(detection_score < limits.min_detection_score)
    )


def frame_rank(measures: dict[str, float], limits: QualityLimits) -> tuple[int, float]:
    """The sort key of a frame's face (smaller is better): failed measures, then yaw."""
    return (
        failed(
            measures["eye_distance"],
            measures["sharpness"],
            measures["yaw"],
            measures["detection_score"],
            limits,
        ),
        round(float(measures["yaw"]), 3),
    )


def best_frame(measures: Sequence[dict[str, float]], limits: QualityLimits) -> int:
    """The index of the frame whose face decides (the first of equals)."""
    return min(range(len(measures)), key=lambda i: (frame_rank(measures[i], limits), i))
