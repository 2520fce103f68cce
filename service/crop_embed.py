"""Re-embedding stored reference crops with a model, realigning crops made for another template.

Two kinds of stored crop (``ReferenceCrop.kind``). A ``canvas`` (every enrolment since storage
revision 0002) is the large aligned canvas of ``service.pipeline.canvas``: a model's crop is cut
from it with the canvas's landmarks, so every template is covered. A ``chip`` (older rows) is
the enrolling model's own crop, handled as follows.

A chip is stored as the PNG the enrolling model was fed, with its meta: the face's 5 landmarks
in the original photo and (since model swaps exist) the alignment it was cut with. When the
new model's alignment (size and template) is the same, the crop goes in as it is. Otherwise the
crop is warped onto the new template: the landmarks' positions in the crop are recomputed from
the photo landmarks with the very similarity transform that cut the crop, so the result is the
alignment the new model would have made from the photo, but for the parts of the face that lay
outside the old crop (black). Crops without stored alignment are taken to be aligned for the
new model when their size matches.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.model_card import Alignment
from service.pipeline.align import align_face, similarity_transform
from service.pipeline.canvas import CANONICAL_TEMPLATE, CANVAS_SIZE, crop_from_canvas
from service.pipeline.embed import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredCrop:
    png: bytes
    meta: dict
    kind: str = "chip"  # ReferenceCrop.kind: "chip" or "canvas"


def decode_png(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def alignment_meta(alignment: Alignment) -> dict:
    """What a gallery stores with a crop about how it was cut."""
    return {"size": list(alignment.size), "template": [list(p) for p in alignment.template]}


def canvas_alignment_meta() -> dict:
    """The canvas's frame in the form of ``alignment_meta`` (stored with a canvas too, so code
    that only knows chips realigns it correctly)."""
    return {"size": list(CANVAS_SIZE), "template": np.round(CANONICAL_TEMPLATE, 4).tolist()}


def _crop_landmarks(meta: dict, src_template: np.ndarray) -> np.ndarray:
    try:
        photo_points = np.asarray(meta["face"]["landmarks"], dtype=np.float64).reshape(5, 2)
    except (KeyError, TypeError, ValueError):
        return src_template
    m = similarity_transform(photo_points, src_template)
    return photo_points @ m[:, :2].T + m[:, 2]


def realign(crop: np.ndarray, meta: dict, target: Alignment) -> np.ndarray:
    """``crop`` as the model with alignment ``target`` expects it (unchanged when already so)."""
    dst_size = target.size
    dst_template = np.asarray(target.template, dtype=np.float64)
    src = meta.get("alignment") if isinstance(meta, dict) else None
    if not src:
        if (crop.shape[1], crop.shape[0]) == dst_size:
            return crop
        # an unknown cut of another size: assume the target template scaled to the crop
        scale = np.array([crop.shape[1] / dst_size[0], crop.shape[0] / dst_size[1]])
        src = {"size": [crop.shape[1], crop.shape[0]], "template": (dst_template * scale).tolist()}
    src_size = tuple(int(v) for v in src["size"])
    src_template = np.asarray(src["template"], dtype=np.float64)
    if src_size == dst_size and np.allclose(src_template, dst_template, atol=1e-3):
        return crop
    points = _crop_landmarks(meta, src_template)
    return align_face(crop, points, dst_template, dst_size)


class CropEmbedder:
    """``embed(crops)`` with one model: decode, realign when needed, run the ONNX model in batches."""

    def __init__(self, embedder: Embedder, batch_size: int = 32) -> None:
        self.embedder = embedder
        self.alignment = embedder.card.alignment
        self.batch_size = batch_size

    def prepare(self, crop: StoredCrop) -> np.ndarray:
        image = decode_png(crop.png)
        if crop.kind == "canvas":
            return crop_from_canvas(image, crop.meta or {}, self.alignment)
        return realign(image, crop.meta or {}, self.alignment)

    def __call__(self, crops: Sequence[StoredCrop]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.embedder.card.embedding_dim), np.float32)
        out = []
        for i in range(0, len(crops), self.batch_size):
            batch = np.stack([self.prepare(c) for c in crops[i : i + self.batch_size]])
            out.append(self.embedder.embed(batch))
        return np.concatenate(out)
