"""The face pipeline as one object: decode -> detect -> select -> align -> embed.

A large JPEG is decoded reduced (``decode_reduced``: by 2, 4 or 8, straight from its DCT
coefficients) when the reduced photo still gives the detector at least what it would take from
the full one (``work_side``: the detector's ``max_side``, and enough pixels that its smallest
face stays the same) and the chosen faces keep, in the reduced photo, at least the eye distance
of the stored canvas and of the model's crop (``need_eye``): otherwise the photo is decoded again,
reduced less or not at all, so that no crop is upsampled because of the reduction. Faces are
reported in original pixels either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from service.errors import MultipleFaces, NoFace
from service.pipeline.align import align_face
from service.pipeline.canvas import CANONICAL_TEMPLATE, Canvas, cut_canvas
from service.pipeline.decode import Decoded, decode_reduced
from service.pipeline.detect import FaceDetector
from service.pipeline.embed import Embedder
from service.pipeline.face import Face
from service.pipeline.face_choice import FaceChoice, as_choice
from service.pipeline.mtcnn_ops import PNET_CELL


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
    index: int = 0  # its place in ``Photo.detected``: the index a client sends as ``face_index``


@dataclass(frozen=True)
class Photo:
    width: int  # original pixels
    height: int
    faces: list[EmbeddedFace]
    rgb: np.ndarray | None = field(default=None, repr=False)  # the decoded photo (for the canvas)
    scale: int = 1  # original pixels per pixel of ``rgb`` (a JPEG decoded reduced: 2, 4 or 8)
    detected: tuple[Face, ...] = ()  # every face found, in ``face_order``; ``faces`` are among them


def face_order(faces: list[Face]) -> list[Face]:
    """The documented order of a photo's faces: largest box area first, ties broken by position
    (left edge, then top edge, in original pixels). ``face_index`` counts in this order."""
    return sorted(faces, key=lambda f: (-round(f.area, 1), round(f.box[0], 1), round(f.box[1], 1)))


def _eye_distance(template: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(template, np.float64)[1] - np.asarray(template, np.float64)[0]))


def _scaled(face: Face, scale: float) -> Face:
    """``face`` with its coordinates multiplied by ``scale``."""
    if scale == 1:
        return face
    box = tuple(float(v) * scale for v in face.box)
    return Face(box=box, score=face.score, landmarks=(face.landmarks * np.float32(scale)).astype(np.float32))  # type: ignore[arg-type]


class FacePipeline:
    def __init__(self, detector: FaceDetector, embedder: Embedder, max_pixels: int) -> None:
        self.detector = detector
        self.embedder = embedder
        self.max_pixels = max_pixels
        card = embedder.card
        self.template = np.asarray(card.alignment.template, dtype=np.float64)
        self.crop_size = card.alignment.size
        # Decode no smaller than the detector works at, nor so small that its smallest face grows
        # (its pyramid stops at the 12-pixel PNet cell), nor below the crops' eye distance.
        self.work_side = max(detector.max_side, -(-detector.min_face_size * detector.max_side // PNET_CELL))
        self.need_eye = max(_eye_distance(CANONICAL_TEMPLATE), _eye_distance(self.template))

    def align(self, rgb: np.ndarray, face: Face, scale: int = 1) -> np.ndarray:
        """The model's crop of ``face`` (original pixels) from ``rgb`` reduced by ``scale``."""
        return align_face(rgb, face.landmarks / np.float32(scale), self.template, self.crop_size)

    @staticmethod
    def canvas(photo: Photo, face: Face) -> Canvas:
        """The face's model-independent canvas, the reference image a gallery stores (its
        landmarks are the canvas's own, independent of how reduced the photo was decoded)."""
        if photo.rgb is None:
            raise ValueError("the photo was processed without keeping its pixels")
        return cut_canvas(photo.rgb, face.landmarks / np.float32(photo.scale))

    def decode(self, data: bytes, max_scale: int = 8) -> Decoded:
        return decode_reduced(data, self.max_pixels, self.work_side, max_scale)

    def detect(self, decoded: Decoded) -> list[Face]:
        """Faces in original pixels."""
        return [_scaled(f, decoded.scale) for f in self.detector.detect(decoded.rgb)]

    def process(
        self,
        data: bytes,
        selection: FaceSelection,
        timings: Timings | None = None,
        face_index: FaceChoice | int | None = None,
    ) -> Photo:
        """Decode ``data``, pick faces by ``selection`` and embed them (in ``face_order``).

        ``face_index`` (a ``FaceChoice``: an index into ``face_order`` or a box) chooses one face
        instead of ``selection`` (an index past the last face: ``FaceIndexOutOfRange``; a box no
        face overlaps enough: ``FaceBoxNoMatch``)."""
        choice = as_choice(face_index)
        t = timings or Timings()
        start = time.perf_counter()
        decoded = self.decode(data)
        start = t.add("decode", start)
        faces = face_order(self.detect(decoded))
        start = t.add("detect", start)
        if not faces:
            raise NoFace(
                f"no face was found in the photo (faces under {self.detector.min_face_size} px across are "
                "not looked for)",
                width=decoded.width,
                height=decoded.height,
                min_face_size=self.detector.min_face_size,
            )
        chosen_index = choice.pick(faces)
        if chosen_index is not None:
            indices = [chosen_index]
        elif selection is FaceSelection.single and len(faces) > 1:
            raise MultipleFaces(
                f"{len(faces)} faces were found; enrol a photo with exactly one face, choose one with "
                "face_index (0 is the largest) or set face_selection=largest",
                faces=[f.to_dict() for f in faces],
            )
        else:
            indices = list(range(len(faces))) if selection is FaceSelection.all else [0]
        chosen = [faces[i] for i in indices]
        smallest = min(f.eye_distance for f in chosen)
        if decoded.scale > 1 and smallest / decoded.scale < self.need_eye:
            scale = decoded.scale // 2
            while scale > 1 and smallest / scale < self.need_eye:
                scale //= 2
            del decoded  # the reduced pixels go before the larger ones come
            decoded = decode_reduced(data, self.max_pixels, 1, max_scale=scale)
            start = t.add("decode", start)
        crops = np.stack([self.align(decoded.rgb, f, decoded.scale) for f in chosen])
        start = t.add("align", start)
        embeddings = self.embedder.embed(crops)
        t.add("embed", start)
        return Photo(
            width=decoded.width,
            height=decoded.height,
            faces=[EmbeddedFace(f, c, e, i) for f, c, e, i in zip(chosen, crops, embeddings, indices)],
            rgb=decoded.rgb,
            scale=decoded.scale,
            detected=tuple(faces),
        )
