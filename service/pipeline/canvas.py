"""The stored reference canvas: a large aligned image in a fixed, model-independent frame.

A model's own aligned crop (e.g. dlib's 150x150 chip) cuts off parts of the face another model's
template needs (the ArcFace 112x112 crop reaches 33 px, in dlib-chip pixels, above the chip's top
edge). Original photos are not stored, so since storage format 2 the gallery keeps, instead of
the enrolling model's crop, a ``CANVAS_SIZE`` canvas on which the face's 5 landmarks are aligned
to ``CANONICAL_TEMPLATE``: the standard ArcFace 5-point template scaled by ``CANVAS_SCALE`` and
centred. At that scale the ArcFace crop covers the central 179x179 pixels (54 px of margin on
every side), dlib's chip lies within x 64-225, y 88-249, and the eyes are 56 px apart, more than
any shipped template asks for (dlib: 54.5 px), so no model's crop is upsampled from it.

Any model's crop is derived from the canvas by the similarity transform from the canvas's own
landmarks (the photo's landmarks mapped into the canvas, stored with it) onto the model card's
template: the least-squares fit commutes with the canvas's similarity, so this is the very
transform ``align_face`` would take on the original photo, resampled twice instead of once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.model_card import Alignment
from service.pipeline.align import align_face, similarity_transform

CANVAS_SIZE = (288, 288)  # (width, height)
CANVAS_SCALE = 1.6
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
_OFFSET = (np.asarray(CANVAS_SIZE, np.float64) - 112 * CANVAS_SCALE) / 2
CANONICAL_TEMPLATE = ARCFACE_112 * CANVAS_SCALE + _OFFSET
CANVAS_FORMAT = 1  # bump when the frame above changes; stored with every canvas


@dataclass(frozen=True)
class Canvas:
    image: np.ndarray  # (H, W, 3) uint8
    landmarks: np.ndarray  # (5, 2): the photo's landmarks in canvas pixels

    def meta(self) -> dict:
        """What is stored with the canvas (JSON-ready) to derive any model's crop from it."""
        return {
            "format": CANVAS_FORMAT,
            "size": list(CANVAS_SIZE),
            "template": np.round(CANONICAL_TEMPLATE, 4).tolist(),
            "landmarks": np.round(self.landmarks, 4).tolist(),
        }


def cut_canvas(rgb: np.ndarray, landmarks: np.ndarray) -> Canvas:
    """The canvas of the face with these photo ``landmarks`` (black outside the photo)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    m = similarity_transform(points, CANONICAL_TEMPLATE)
    image = align_face(rgb, points, CANONICAL_TEMPLATE, CANVAS_SIZE)
    return Canvas(image, points @ m[:, :2].T + m[:, 2])


def canvas_landmarks(meta: dict) -> np.ndarray:
    """The landmarks stored with a canvas; the canonical template when they are missing."""
    canvas = meta.get("canvas") if isinstance(meta, dict) else None
    try:
        return np.asarray(canvas["landmarks"], np.float64).reshape(5, 2)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        template = canvas.get("template") if isinstance(canvas, dict) else None
        return np.asarray(template if template is not None else CANONICAL_TEMPLATE, np.float64).reshape(5, 2)


def crop_from_canvas(canvas: np.ndarray, meta: dict, target: Alignment) -> np.ndarray:
    """The crop a model with alignment ``target`` expects, cut from a stored canvas."""
    return align_face(canvas, canvas_landmarks(meta), np.asarray(target.template, np.float64), target.size)


__all__ = ["CANONICAL_TEMPLATE", "CANVAS_SIZE", "Canvas", "crop_from_canvas", "cut_canvas"]
