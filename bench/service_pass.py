"""LFW photos through the service's own enrolment pipeline, once, cached: embedding and quality measures.

Each photo goes through ``FacePipeline.process`` (decode, MTCNN, largest face, alignment on the
model card's template, the card's ONNX model) built with the service's default settings, and its
face through ``service.pipeline.quality.assess``'s measures: inter-eye distance, sharpness of the
aligned crop, yaw from the landmarks and the detector's score. What the service's enrolment gate
and duplicate check see is therefore exactly what the benchmarks measure.

The result is cached (``.npz`` under the evaluation cache) per image root, model file and detector
setting; ``bench/quality_gates.py`` and ``bench/duplicates.py`` share it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.errors import FaceGateError
from service.model_card import load_card
from service.pipeline.detect import FaceDetector
from service.pipeline.embed import Embedder
from service.pipeline.pipeline import FacePipeline, FaceSelection
from service.pipeline.quality import sharpness, yaw_asymmetry
from service.settings import Settings
from training.evaluation.embedding_cache import PipelineConfig, detector_tag, load_npz, save_npz

log = logging.getLogger(__name__)

MEASURES = ("eye_distance", "sharpness", "yaw", "detection_score")


@dataclass(frozen=True)
class ServicePass:
    keys: list[str]
    found: np.ndarray  # (n,) bool: a face was found (else the service answers no_face)
    embeddings: np.ndarray  # (n, D) float32, NaN rows where no face was found
    measures: dict[str, np.ndarray]  # name -> (n,) float64, NaN where no face was found

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        index = {k: i for i, k in enumerate(self.keys)}
        return np.array([index[k] for k in keys], dtype=np.int64)


def _cache_path(image_root: Path, model_dir: Path, models_dir: Path, cache_dir: Path, s: Settings) -> Path:
    mtcnn = detector_tag(models_dir, PipelineConfig())["mtcnn"]
    tag = [
        str(image_root.resolve()),
        load_card(model_dir).sha256,
        mtcnn,
        s.min_face_size,
        s.detect_max_side,
        1,
    ]
    digest = hashlib.sha256(json.dumps(tag).encode()).hexdigest()[:16]
    return cache_dir / f"service-pass-{digest}.npz"


def service_pass(
    image_root: Path, keys: Sequence[str], model_dir: Path, models_dir: Path, cache_dir: Path
) -> ServicePass:
    """Embeddings and quality measures of ``keys`` (paths under ``image_root``), cached."""
    keys = list(dict.fromkeys(keys))
    settings = Settings(models_dir=models_dir)
    path = _cache_path(image_root, model_dir, models_dir, cache_dir, settings)
    cached = load_npz(path)
    known = {str(k) for k in cached.get("keys", np.array([], dtype=str))}
    todo = [k for k in keys if k not in known]
    if todo:
        detector = FaceDetector(
            models_dir,
            min_face_size=settings.min_face_size,
            max_side=settings.detect_max_side,
            intra_op_threads=1,
        )
        pipeline = FacePipeline(detector, Embedder(model_dir, threads=1), settings.max_image_pixels)
        dim = load_card(model_dir).embedding_dim
        rows: dict[str, list] = {"keys": [], "found": [], "embeddings": [], **{m: [] for m in MEASURES}}
        log.info("running %d photos through the service pipeline", len(todo))
        for n, key in enumerate(todo, 1):
            try:
                face = pipeline.process((image_root / key).read_bytes(), FaceSelection.largest).faces[0]
            except FaceGateError:
                values = [np.nan] * len(MEASURES)
                emb, found = np.full(dim, np.nan, np.float32), False
            else:
                f = face.face
                values = [f.eye_distance, sharpness(face.crop), yaw_asymmetry(f.landmarks), f.score]
                emb, found = face.embedding.astype(np.float32), True
            rows["keys"].append(key)
            rows["found"].append(found)
            rows["embeddings"].append(emb)
            for m, v in zip(MEASURES, values, strict=True):
                rows[m].append(float(v))
            if n % 500 == 0 or n == len(todo):
                log.info("%d/%d", n, len(todo))
                add = {k: np.asarray(v) for k, v in rows.items()}
                cached = add if not cached else {k: np.concatenate([cached[k], add[k]]) for k in add}
                rows = {k: [] for k in rows}
                save_npz(path, **cached)
    index = {str(k): i for i, k in enumerate(cached["keys"])}
    idx = np.array([index[k] for k in keys], dtype=np.int64)
    return ServicePass(
        keys,
        cached["found"][idx].astype(bool),
        cached["embeddings"][idx].astype(np.float32),
        {m: cached[m][idx].astype(np.float64) for m in MEASURES},
    )


def lfw_view2_pass(data_dir: Path, model_dir: Path, models_dir: Path, cache_dir: Path) -> ServicePass:
    """Every photo named by LFW View 2's ``pairs.txt``, through the service pipeline."""
    from training.evaluation.pairs import read_lfw_pairs

    lfw = data_dir / "lfw"
    return service_pass(
        lfw / "images", read_lfw_pairs(lfw / "pairs.txt").keys, model_dir, models_dir, cache_dir
    )
