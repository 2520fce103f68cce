"""Embed a set of image files through the service's own preprocessing, with an on-disk cache.

decode (``service.pipeline.decode``) -> MTCNN (``service.pipeline.detect``) -> largest face ->
``align_face`` onto the model card's template -> the card's ONNX model (``service.pipeline.embed``).

Two caches, each an ``.npz`` under ``cache_dir``: detections (per image root and detector
setting: shared by every model) and embeddings (per image root, detector setting, model file
hash and alignment). An evaluation therefore embeds each image once, and evaluating a second
model re-runs only alignment and the embedding network.

Images where the detector finds no face are kept, aligned from a fixed centred position: the
mean MTCNN landmarks over the LFW deep-funneled images where a face was found, as fractions
of the image width and height (``CENTRED_LANDMARKS``). They are counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.model_card import load_card
from service.pipeline.align import align_face
from service.pipeline.decode import decode_image

log = logging.getLogger(__name__)

# Mean MTCNN landmarks (x / width, y / height) over the LFW deep-funneled images with a face;
# measured with ``training.dlib.template`` (see models/dlib/TEMPLATE.md).
CENTRED_LANDMARKS = np.array(
    [[0.4222, 0.4527], [0.5901, 0.4503], [0.5062, 0.5493], [0.4323, 0.6352], [0.5828, 0.6334]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class PipelineConfig:
    """The service's detection settings (its defaults) and what to do when no face is found."""

    min_face_size: int = 40
    max_side: int = 640
    max_pixels: int = 40_000_000
    fallback: str = "centred"  # "centred" (see module doc) or "none" (the image has no embedding)
    face_choice: str = "largest"  # "largest" (the service's policy) or "centre" (nearest the image centre)
    batch_size: int = 64
    threads: int = 0

    def __post_init__(self) -> None:
        if self.fallback not in ("centred", "none"):
            raise ValueError(f"unknown fallback {self.fallback!r}; valid: centred, none")
        if self.face_choice not in ("largest", "centre"):
            raise ValueError(f"unknown face_choice {self.face_choice!r}; valid: largest, centre")


@dataclass(frozen=True)
class Detections:
    keys: list[str]
    landmarks: np.ndarray  # (n, 5, 2) float32, NaN where no face was found
    found: np.ndarray  # (n,) bool


@dataclass(frozen=True)
class EmbeddedImages:
    keys: list[str]
    embeddings: np.ndarray  # (n, D) float32; rows of images without a face are NaN when fallback="none"
    found: np.ndarray  # (n,) bool: the detector found a face

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}

    @property
    def not_found(self) -> list[str]:
        return [k for k, f in zip(self.keys, self.found, strict=True) if not f]


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a cache file, or nothing when it is absent."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_npz(path: Path, **arrays: Any) -> None:
    """Write a cache file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_rgb(path: Path, max_pixels: int) -> np.ndarray:
    return decode_image(path.read_bytes(), max_pixels)


def centred_landmarks(width: int, height: int) -> np.ndarray:
    return (CENTRED_LANDMARKS * np.array([width, height])).astype(np.float32)


def detector_tag(models_dir: Path, config: PipelineConfig) -> dict:
    files = sorted((models_dir / "mtcnn").glob("*.onnx"))
    return {
        "mtcnn": [hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files],
        "min_face_size": config.min_face_size,
        "max_side": config.max_side,
    }


MAX_FACES = 4  # faces kept per image in the detection cache, largest first


def detect_images(
    image_root: Path, keys: Sequence[str], models_dir: Path, cache_dir: Path, config: PipelineConfig
) -> Detections:
    """MTCNN landmarks of the chosen face (``config.face_choice``) of each image.

    The cache (per image root and detector setting) keeps up to ``MAX_FACES`` faces per image, so
    either choice reads it without detecting again.
    """
    from service.pipeline.detect import FaceDetector

    tag = detector_tag(models_dir, config)
    path = cache_dir / f"detections-v2-{_digest([str(image_root.resolve()), tag])}.npz"
    cached = load_npz(path)
    known = {str(k): i for i, k in enumerate(cached.get("keys", np.array([], dtype=str)))}
    todo = [k for k in dict.fromkeys(keys) if k not in known]
    rows: dict[str, list[np.ndarray]] = {"keys": [], "boxes": [], "landmarks": [], "sizes": []}
    if todo:
        detector = FaceDetector(models_dir, min_face_size=config.min_face_size, max_side=config.max_side)
        log.info("detecting faces in %d images under %s", len(todo), image_root)
        for n, key in enumerate(todo, 1):
            rgb = read_rgb(image_root / key, config.max_pixels)
            faces = detector.detect(rgb)[:MAX_FACES]
            boxes = np.full((MAX_FACES, 5), np.nan, np.float32)
            marks = np.full((MAX_FACES, 5, 2), np.nan, np.float32)
            for j, f in enumerate(faces):
                boxes[j] = [*f.box, f.score]
                marks[j] = f.landmarks
            for name, value in (
                ("keys", key),
                ("boxes", boxes),
                ("landmarks", marks),
                ("sizes", rgb.shape[:2]),
            ):
                rows[name].append(np.asarray(value))
            if n % 500 == 0 or n == len(todo):
                log.info("detected %d/%d", n, len(todo))
                add = {k: np.stack(v) for k, v in rows.items()}
                cached = add if not cached else {k: np.concatenate([cached[k], add[k]]) for k in add}
                rows = {k: [] for k in rows}
                save_npz(path, **cached)
        known = {str(k): i for i, k in enumerate(cached["keys"])}
    idx = np.array([known[k] for k in keys], dtype=np.int64)
    boxes, marks, sizes = cached["boxes"][idx], cached["landmarks"][idx], cached["sizes"][idx]
    found = np.isfinite(boxes[:, 0, 0])
    pick = np.zeros(len(idx), dtype=np.int64)
    if config.face_choice == "centre":
        centres = (boxes[:, :, :2] + boxes[:, :, 2:4]) / 2
        dist = np.linalg.norm(centres - sizes[:, None, ::-1] / 2, axis=2)
        pick = np.argmin(np.where(np.isfinite(dist), dist, np.inf), axis=1)
    return Detections(list(keys), marks[np.arange(len(idx)), pick], found)


def embed_images(
    image_root: Path,
    keys: Sequence[str],
    model_dir: Path,
    models_dir: Path,
    cache_dir: Path,
    config: PipelineConfig = PipelineConfig(),
) -> EmbeddedImages:
    """Embeddings of ``keys`` (paths under ``image_root``) by the model in ``model_dir``, cached."""
    from service.pipeline.embed import Embedder

    keys = list(dict.fromkeys(keys))
    card = load_card(model_dir)
    det = detect_images(image_root, keys, models_dir, cache_dir, config)
    tag = [
        str(image_root.resolve()),
        detector_tag(models_dir, config),
        card.sha256,
        card.alignment.model_dump(),
        CENTRED_LANDMARKS.tolist(),
        config.face_choice,
    ]
    path = cache_dir / f"embeddings-{_digest(tag)}.npz"
    cached = load_npz(path)
    known = {str(k): i for i, k in enumerate(cached.get("keys", np.array([], dtype=str)))}
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        embedder = Embedder(model_dir, threads=config.threads)
        template = np.asarray(card.alignment.template, dtype=np.float64)
        size = card.alignment.size
        log.info("embedding %d images with %s %s", len(todo), card.name, card.version)
        for start in range(0, len(todo), config.batch_size):
            chunk = todo[start : start + config.batch_size]
            rgbs = [read_rgb(image_root / keys[i], config.max_pixels) for i in chunk]
            crops = np.stack(
                [
                    align_face(im, _points(det, i, im), template, size)
                    for im, i in zip(rgbs, chunk, strict=True)
                ]
            )
            emb = embedder.embed(crops)
            add = {"keys": np.array([keys[i] for i in chunk]), "embeddings": emb}
            cached = add if not cached else {k: np.concatenate([cached[k], add[k]]) for k in add}
            if (start // config.batch_size) % 10 == 9 or start + config.batch_size >= len(todo):
                log.info("embedded %d/%d", min(start + config.batch_size, len(todo)), len(todo))
                save_npz(path, **cached)
        known = {str(k): i for i, k in enumerate(cached["keys"])}
    emb = cached["embeddings"][[known[k] for k in keys]].astype(np.float32)
    if config.fallback == "none":
        emb[~det.found] = np.nan
    return EmbeddedImages(keys, emb, det.found)


def _points(det: Detections, i: int, rgb: np.ndarray) -> np.ndarray:
    return det.landmarks[i] if det.found[i] else centred_landmarks(rgb.shape[1], rgb.shape[0])


def config_dict(config: PipelineConfig) -> dict:
    return asdict(config)
