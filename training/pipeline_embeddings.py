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

import numpy as np

from service.model_card import load_card
from service.pipeline.align import align_face
from service.pipeline.decode import decode_image

log = logging.getLogger(__name__)

# Mean MTCNN landmarks (x / width, y / height) over the LFW deep-funneled images with a face;
# measured with ``training.fit_template`` (see models/default/TEMPLATE.md).
CENTRED_LANDMARKS = np.array(
    [[0.4156, 0.4631], [0.5858, 0.4629], [0.5008, 0.5640], [0.4297, 0.6473], [0.5735, 0.6472]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class PipelineConfig:
    """The service's detection settings (its defaults) and what to do when no face is found."""

    min_face_size: int = 40
    max_side: int = 640
    max_pixels: int = 40_000_000
    fallback: str = "centred"  # "centred" (see module doc) or "none" (the image has no embedding)
    batch_size: int = 64
    threads: int = 0

    def __post_init__(self) -> None:
        if self.fallback not in ("centred", "none"):
            raise ValueError(f"unknown fallback {self.fallback!r}; valid: centred, none")


@dataclass(frozen=True)
class Detections:
    keys: list[str]
    landmarks: np.ndarray  # (n, 5, 2) float32, the fallback's points where no face was found
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


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
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


def detect_images(
    image_root: Path, keys: Sequence[str], models_dir: Path, cache_dir: Path, config: PipelineConfig
) -> Detections:
    """Largest-face MTCNN landmarks for each image, cached per image root and detector setting."""
    from service.pipeline.detect import FaceDetector

    tag = detector_tag(models_dir, config)
    path = cache_dir / f"detections-{_digest([str(image_root.resolve()), tag])}.npz"
    cached = _load_npz(path)
    known = {str(k): i for i, k in enumerate(cached.get("keys", np.array([], dtype=str)))}
    todo = [k for k in dict.fromkeys(keys) if k not in known]
    new_keys: list[str] = []
    new_lm: list[np.ndarray] = []
    new_found: list[bool] = []
    if todo:
        detector = FaceDetector(models_dir, min_face_size=config.min_face_size, max_side=config.max_side)
        log.info("detecting faces in %d images under %s", len(todo), image_root)
        for n, key in enumerate(todo, 1):
            rgb = read_rgb(image_root / key, config.max_pixels)
            faces = detector.detect(rgb)
            found = bool(faces)
            lm = faces[0].landmarks if found else centred_landmarks(rgb.shape[1], rgb.shape[0])
            new_keys.append(key)
            new_lm.append(np.asarray(lm, dtype=np.float32))
            new_found.append(found)
            if n % 500 == 0 or n == len(todo):
                log.info("detected %d/%d", n, len(todo))
                cached = _merge(cached, new_keys, new_lm, new_found)
                new_keys, new_lm, new_found = [], [], []
                _save_npz(path, **cached)
        known = {str(k): i for i, k in enumerate(cached["keys"])}
    idx = [known[k] for k in keys]
    return Detections(list(keys), cached["landmarks"][idx], cached["found"][idx].astype(bool))


def _merge(cached: dict[str, np.ndarray], keys: list[str], lm: list[np.ndarray], found: list[bool]) -> dict:
    if not keys:
        return cached
    add = {"keys": np.array(keys), "landmarks": np.stack(lm), "found": np.array(found)}
    if not cached:
        return add
    return {k: np.concatenate([cached[k], add[k]]) for k in add}


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
    ]
    path = cache_dir / f"embeddings-{_digest(tag)}.npz"
    cached = _load_npz(path)
    known = {str(k): i for i, k in enumerate(cached.get("keys", np.array([], dtype=str)))}
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        embedder = Embedder(model_dir, threads=config.threads)
        template = np.asarray(card.alignment.template, dtype=np.float64)
        size = tuple(card.alignment.size)
        log.info("embedding %d images with %s %s", len(todo), card.name, card.version)
        for start in range(0, len(todo), config.batch_size):
            chunk = todo[start : start + config.batch_size]
            crops = np.stack(
                [
                    align_face(
                        read_rgb(image_root / keys[i], config.max_pixels), det.landmarks[i], template, size
                    )
                    for i in chunk
                ]
            )
            emb = embedder.embed(crops)
            add = {"keys": np.array([keys[i] for i in chunk]), "embeddings": emb}
            cached = add if not cached else {k: np.concatenate([cached[k], add[k]]) for k in add}
            if (start // config.batch_size) % 10 == 9 or start + config.batch_size >= len(todo):
                log.info("embedded %d/%d", min(start + config.batch_size, len(todo)), len(todo))
                _save_npz(path, **cached)
        known = {str(k): i for i, k in enumerate(cached["keys"])}
    emb = cached["embeddings"][[known[k] for k in keys]].astype(np.float32)
    if config.fallback == "none":
        emb[~det.found] = np.nan
    return EmbeddedImages(keys, emb, det.found)


def config_dict(config: PipelineConfig) -> dict:
    return asdict(config)
