"""Frozen embeddings of the training set (celeba-aligned) and the test set (LFW View 2 images),
computed ONCE through the service's pipeline and cached as ``.npz`` (never committed).

decode -> MTCNN (``service.pipeline.detect``, detections cached by
``training.evaluation.embedding_cache``) -> ``align_face`` on the model card's template -> the
card's ONNX network (``service.pipeline.embed.Embedder``).

CelebA's aligned 89x109 crops where MTCNN finds no face are aligned from CelebA's known mean
landmarks (``training.data.prepare.SOURCE_LANDMARKS``), LFW images from the centred landmarks
of ``embedding_cache`` (as the service's evaluation does).

    python -m training.science.embeddings --model models/sface      # -> var/science/sface-*.npz
"""

from __future__ import annotations

import argparse
import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.model_card import load_card
from service.pipeline.align import align_face
from training.data.prepare import assumed_landmarks
from training.evaluation.embedding_cache import (
    PipelineConfig,
    centred_landmarks,
    detect_images,
    load_npz,
    read_rgb,
    save_npz,
)
from training.evaluation.pairs import read_lfw_pairs

log = logging.getLogger(__name__)

CELEBA_MIN_FACE = 20  # celeba-aligned crops are 89x109: faces of ~50 px (facegate-train prepare uses 20)


@dataclass(frozen=True)
class EmbeddingSet:
    keys: np.ndarray  # (n,) str, paths under the image root
    labels: np.ndarray  # (n,) int64 identity index
    names: np.ndarray  # (n,) str identity name
    embeddings: np.ndarray  # (n, D) float32, L2-normalised
    found: np.ndarray  # (n,) bool: the detector found a face

    @classmethod
    def load(cls, path: Path) -> EmbeddingSet:
        z = load_npz(path)
        if not z:
            raise FileNotFoundError(f"no embedding set at {path}: run python -m training.science.embeddings")
        return cls(z["keys"], z["labels"].astype(np.int64), z["names"], z["embeddings"], z["found"])


def celeba_keys(root: Path) -> tuple[list[str], list[str]]:
    with (root / "labels.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [r["path"] for r in rows], [r["identity"] for r in rows]


def lfw_keys(root: Path) -> tuple[list[str], list[str]]:
    keys = read_lfw_pairs(root / "pairs.txt").keys
    return keys, [k.split("/")[0] for k in keys]


def aligned_crop(
    rgb: np.ndarray, landmarks: np.ndarray | None, fallback: str, template: np.ndarray, size
) -> np.ndarray:
    """``rgb`` aligned on ``template``: on the detected ``landmarks``, or, where no face was found,
    on CelebA's assumed landmarks (``fallback == "celeba"``: its crops are aligned already) or a
    centred face."""
    h, w = rgb.shape[:2]
    if landmarks is not None:
        pts = landmarks
    elif fallback == "celeba":
        pts = assumed_landmarks(w, h, "celeba")
    else:
        pts = centred_landmarks(w, h)
    return align_face(rgb, pts, template, size)


def embed_set(
    image_root: Path,
    keys: list[str],
    names: list[str],
    model_dir: Path,
    models_dir: Path,
    cache_dir: Path,
    config: PipelineConfig,
    fallback: str,
    out: Path,
) -> EmbeddingSet:
    """Detect (cached), align and embed every image; writes ``out`` and returns it."""
    from service.pipeline.embed import Embedder

    if out.is_file():
        return EmbeddingSet.load(out)
    card = load_card(model_dir)
    det = detect_images(image_root, keys, models_dir, cache_dir, config)
    embedder = Embedder(model_dir, threads=config.threads)
    template = np.asarray(card.alignment.template, dtype=np.float64)
    size = card.alignment.size
    embs = []
    for start in range(0, len(keys), config.batch_size):
        crops = []
        for i in range(start, min(start + config.batch_size, len(keys))):
            rgb = read_rgb(image_root / keys[i], config.max_pixels)
            crops.append(
                aligned_crop(rgb, det.landmarks[i] if det.found[i] else None, fallback, template, size)
            )
        embs.append(embedder.embed(np.stack(crops)))
        if (start // config.batch_size) % 20 == 0:
            log.info("%s: embedded %d/%d", out.name, start + len(crops), len(keys))
    emb = np.concatenate(embs).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    uniq = {n: i for i, n in enumerate(dict.fromkeys(names))}
    labels = np.array([uniq[n] for n in names], dtype=np.int64)
    save_npz(out, keys=np.array(keys), labels=labels, names=np.array(names), embeddings=emb, found=det.found)
    log.info("%s: %d images, %d without a detected face", out.name, len(keys), int((~det.found).sum()))
    return EmbeddingSet.load(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--model", type=Path, default=Path("models/sface"))
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="folder holding mtcnn/")
    p.add_argument("--out", type=Path, default=Path("var/science"))
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tag = a.model.name
    cache = a.out / "detections"
    keys, names = celeba_keys(a.data / "celeba-aligned")
    cfg = PipelineConfig(min_face_size=CELEBA_MIN_FACE, threads=a.threads)
    embed_set(a.data / "celeba-aligned", keys, names, a.model, a.models_dir, cache, cfg, "celeba",
              a.out / f"{tag}-celeba.npz")  # fmt: skip
    keys, names = lfw_keys(a.data / "lfw")
    cfg = PipelineConfig(threads=a.threads)
    embed_set(a.data / "lfw" / "images", keys, names, a.model, a.models_dir, cache, cfg, "centred",
              a.out / f"{tag}-lfw.npz")  # fmt: skip


if __name__ == "__main__":
    main()
