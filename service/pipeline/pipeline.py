"""The face pipeline as one object: decode -> detect -> select -> align -> embed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from service.errors import MultipleFaces, NoFace
from service.pipeline.align import align_face
from service.pipeline.canvas import Canvas, cut_canvas
from service.pipeline.decode import decode_image
from service.pipeline.detect import FaceDetector
from service.pipeline.embed import Embedder
from service.pipeline.face import Face


class FaceSelection(str, Enum):
    single = "single"  # exactly one face, else multiple_faces
    largest = "largest"
    all = "all"


@dataclass
class Timings:
    """Milliseconds spent per stage, for metrics and the latency benchmark."""

    stages: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - start) * 1000.0
        return now


@dataclass(frozen=True)
class EmbeddedFace:
    face: Face
    crop: np.ndarray
    embedding: np.ndarray


@dataclass(frozen=True)
class Photo:
    width: int
    height: int
    faces: list[EmbeddedFace]
    rgb: np.ndarray | None = field(default=None, repr=False)  # the decoded photo (for the canvas)


class FacePipeline:
    def __init__(self, detector: FaceDetector, embedder: Embedder, max_pixels: int) -> None:
        self.detector = detector
        self.embedder = embedder
        self.max_pixels = max_pixels
        card = embedder.card
        self.template = np.asarray(card.alignment.template, dtype=np.float64)
        self.crop_size = card.alignment.size

    def align(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        return align_face(rgb, face.landmarks, self.template, self.crop_size)

    @staticmethod
    def canvas(photo: Photo, face: Face) -> Canvas:
        """The face's model-independent canvas, the reference image a gallery stores."""
        if photo.rgb is None:
            raise ValueError("the photo was processed without keeping its pixels")
        return cut_canvas(photo.rgb, face.landmarks)

    def process(self, data: bytes, selection: FaceSelection, timings: Timings | None = None) -> Photo:
        """Decode ``data``, pick faces by ``selection`` and embed them (largest face first)."""
        t = timings or Timings()
        start = time.perf_counter()
        rgb = decode_image(data, self.max_pixels)
        start = t.add("decode", start)
        faces = self.detector.detect(rgb)
        start = t.add("detect", start)
        if not faces:
            raise NoFace("no face was found in the photo", width=rgb.shape[1], height=rgb.shape[0])
        if selection is FaceSelection.single and len(faces) > 1:
            raise MultipleFaces(
                f"{len(faces)} faces were found; enrol a photo with exactly one face or set face_selection=largest",
                faces=[f.to_dict() for f in faces],
            )
        chosen = faces if selection is FaceSelection.all else faces[:1]
        crops = np.stack([self.align(rgb, f) for f in chosen])
        start = t.add("align", start)
        embeddings = self.embedder.embed(crops)
        t.add("embed", start)
        return Photo(
            width=rgb.shape[1],
            height=rgb.shape[0],
            faces=[EmbeddedFace(f, c, e) for f, c, e in zip(chosen, crops, embeddings)],
            rgb=rgb,
        )
