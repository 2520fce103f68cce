"""One enrolment photo's work before the gallery is involved: the face, the quality gate, the stored crop.

``prepare_enrolment`` is what ``Recognizer.enroll`` (POST /enroll) and ``facegate enroll-dir``'s
worker processes (``service.bulk_enroll``) both run on a photo: decode, detect, choose the face,
align, embed, the enrolment quality gate (``quality_filter``: ``LowQuality``), and the canvas crop
that the gallery stores, as PNG. What it returns is plain data (it crosses process boundaries);
the duplicate check and the write need the gallery and stay with the caller.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from service.errors import LowQuality
from service.pipeline.face import Face
from service.pipeline.face_choice import FaceChoice
from service.pipeline.pipeline import FacePipeline, FaceSelection, Timings
from service.pipeline.quality import QualityLimits, QualityReport, assess, limits_for
from service.schemas import EnrollOptions


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class PreparedEnrolment:
    """A photo that passed the quality gate: what the gallery stores and what the answer reports."""

    embedding: np.ndarray  # the model's embedding of the chosen face
    crop_png: bytes  # the face's canvas (``FacePipeline.canvas``), the stored reference
    crop_size: tuple[int, int]  # (width, height) of the canvas
    face_meta: dict[str, Any]  # face, quality, photo size, canvas frame
    photo_sha256: str
    face: Face
    quality: QualityReport
    detected: tuple[Face, ...]  # every face of the photo, in ``face_order``
    face_index: int  # the chosen face's place in ``detected``

    def stored(self) -> dict[str, Any]:
        """``Gallery.enroll``'s keyword arguments for the face (the caller adds who and how)."""
        return {
            "crop_png": self.crop_png,
            "crop_size": self.crop_size,
            "crop_kind": "canvas",
            "face_meta": self.face_meta,
            "photo_sha256": self.photo_sha256,
            "embedding": self.embedding,
        }


def prepare_enrolment(
    pipeline: FacePipeline,
    levels: dict[str, QualityLimits],
    data: bytes,
    opts: EnrollOptions,
    timings: Timings | None = None,
) -> PreparedEnrolment:
    """The photo's face, gated by ``opts.quality_filter`` (``levels``: ``quality_levels``), and
    its canvas. Raises the pipeline's errors (``no_face``, ``multiple_faces``, ...) and ``LowQuality``."""
    photo = pipeline.process(
        data, FaceSelection(opts.face_selection), timings, FaceChoice(opts.face_index, opts.face_box)
    )
    face = photo.faces[0]
    quality = assess(face.face, face.crop, limits_for(levels, opts.quality_filter))
    if not quality.ok:
        raise LowQuality(
            "; ".join(p["message"] for p in quality.problems) + f" (quality_filter={opts.quality_filter})",
            reasons=quality.problems,
            quality=quality.to_dict(),
            quality_filter=opts.quality_filter,
            face=face.face.to_dict(),
        )
    canvas = pipeline.canvas(photo, face.face)  # stored: any later model's crop is cut from it
    return PreparedEnrolment(
        embedding=face.embedding,
        crop_png=png(canvas.image),
        crop_size=(canvas.image.shape[1], canvas.image.shape[0]),
        face_meta={
            "face": face.face.to_dict(),
            "quality": quality.to_dict(),
            "photo": [photo.width, photo.height],
            "canvas": canvas.meta(),
        },
        photo_sha256=hashlib.sha256(data).hexdigest(),
        face=face.face,
        quality=quality,
        detected=photo.detected,
        face_index=face.index,
    )
