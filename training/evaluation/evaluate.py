"""Evaluate any model (card + ONNX) through FaceGate's own preprocessing on verification pairs.

LFW's official protocol (View 2, ``pairs.txt``): 10 identity-disjoint folds of 300 matched and
300 mismatched pairs; accuracy is the mean ± sample std over the folds with the threshold chosen
on the other nine each time; ROC AUC, EER and TAR at FAR 1e-2 / 1e-3 are computed over all 6,000
pairs. The score is the cosine similarity of the two embeddings.

Also any folder of identities (``<identity>/<image>`` or ``labels.csv``) with identity-disjoint
folds of pairs sampled by a seeded generator (``training.evaluation.pairs.sample_pairs``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from service.model_card import load_card
from training.evaluation.embedding_cache import (
    CENTRED_LANDMARKS,
    EmbeddedImages,
    PipelineConfig,
    config_dict,
    embed_images,
)
from training.evaluation.metrics import verification_report
from training.evaluation.pairs import PairSet, list_identities, read_lfw_pairs, sample_pairs
from training.paths import require

log = logging.getLogger(__name__)

FALLBACK_NOTE = (
    "images where MTCNN finds no face are aligned from fixed centred landmarks (the mean MTCNN landmarks "
    "over LFW deep-funneled images, as fractions of the image size: {pts}) and still scored"
)
FACE_NOTE = {
    "largest": "largest face (the service's policy)",
    "centre": "face nearest the image centre (the labelled subject)",
}
NONE_NOTE = "pairs with an image where MTCNN finds no face are left out"


def pair_scores(pairs: PairSet, emb: EmbeddedImages) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity per pair, and a mask of the pairs whose two images have an embedding."""
    idx = emb.index()
    a = emb.embeddings[[idx[p.a] for p in pairs.pairs]]
    b = emb.embeddings[[idx[p.b] for p in pairs.pairs]]
    scores = np.sum(a.astype(np.float64) * b, axis=1)
    return scores, np.isfinite(scores)


def score_report(
    scores: np.ndarray, pairs: PairSet, plots_dir: Path | None = None, title: str = ""
) -> dict[str, object]:
    """The protocol's figures for scored ``pairs`` (plus ROC/DET and histogram PNGs when asked)."""
    labels, folds = pairs.labels, pairs.folds
    report = verification_report(scores, labels, folds).to_dict()
    if plots_dir is not None:
        from training.evaluation.plots import save_roc_det, save_score_histogram

        plots_dir.mkdir(parents=True, exist_ok=True)
        report["plots"] = {
            "roc_det": str(save_roc_det({title or "model": (scores, labels)}, plots_dir / "roc_det.png")),
            "histogram": str(save_score_histogram(scores, labels, plots_dir / "scores.png", title=title)),
        }
    return report


def evaluate_pairs(
    model_dir: Path,
    image_root: Path,
    pairs: PairSet,
    models_dir: Path,
    cache_dir: Path,
    config: PipelineConfig = PipelineConfig(),
    plots_dir: Path | None = None,
) -> dict[str, object]:
    """Embed every image of ``pairs`` once through the service pipeline and score the pairs."""
    card = load_card(model_dir)
    emb = embed_images(image_root, pairs.keys, model_dir, models_dir, cache_dir, config)
    scores, ok = pair_scores(pairs, emb)
    kept = PairSet(tuple(p for p, k in zip(pairs.pairs, ok, strict=True) if k), pairs.n_folds, pairs.source)
    report = score_report(scores[ok], kept, plots_dir, title=f"{card.name} {card.version}")
    missing = emb.not_found
    report.update(
        {
            "model": f"{card.name} {card.version}",
            "score": "cosine similarity",
            "pipeline": (
                f"service decode -> MTCNN (min face {config.min_face_size} px, max side {config.max_side}) "
                f"-> {FACE_NOTE[config.face_choice]} -> similarity alignment to the card's template "
                f"({card.alignment.size[0]}x{card.alignment.size[1]}) -> ONNX embedding"
            ),
            "images": len(emb.keys),
            "faces_not_found": len(missing),
            "faces_not_found_examples": missing[:20],
            "no_face_policy": (
                FALLBACK_NOTE.format(pts=np.round(CENTRED_LANDMARKS, 3).tolist())
                if config.fallback == "centred"
                else NONE_NOTE
            ),
            "pairs_scored": int(ok.sum()),
            "pairs_left_out": int((~ok).sum()),
            "pipeline_config": config_dict(config),
        }
    )
    return report


def evaluate_lfw(
    model_dir: Path,
    data_dir: Path,
    models_dir: Path,
    cache_dir: Path,
    config: PipelineConfig = PipelineConfig(),
    plots_dir: Path | None = None,
) -> dict[str, Any]:
    """LFW View 2 (``pairs.txt``) through the service pipeline; the model card's ``evaluation``."""
    lfw = require(data_dir / "lfw", "FACEGATE_DATA", "LFW")
    pairs = read_lfw_pairs(lfw / "pairs.txt")
    report = evaluate_pairs(model_dir, lfw / "images", pairs, models_dir, cache_dir, config, plots_dir)
    return {
        "dataset": "LFW deep-funneled (13,233 images, 5,749 people)",
        "protocol": (
            "LFW View 2 pairs.txt: 10 identity-disjoint folds x (300 matched + 300 mismatched); accuracy = "
            "mean ± sample std (ddof=1) over folds, threshold chosen on the other 9 folds; ROC AUC, EER and "
            "TAR@FAR over all 6,000 pairs (accept score > the (floor(FAR*n)+1)-th highest impostor score)"
        ),
        **report,
    }


def evaluate_folder(
    model_dir: Path,
    folder: Path,
    models_dir: Path,
    cache_dir: Path,
    seed: int = 0,
    per_fold: int = 300,
    n_folds: int = 10,
    config: PipelineConfig = PipelineConfig(),
    plots_dir: Path | None = None,
) -> dict[str, object]:
    """The same protocol on pairs sampled (seeded) from a folder of identities."""
    pairs = sample_pairs(list_identities(folder), np.random.default_rng(seed), per_fold, n_folds)
    report = evaluate_pairs(model_dir, folder, pairs, models_dir, cache_dir, config, plots_dir)
    return {
        "dataset": str(folder),
        "protocol": (
            f"{n_folds} identity-disjoint folds of up to {per_fold} matched + as many mismatched pairs "
            f"sampled with seed {seed}; accuracy = mean ± sample std over folds, threshold from other folds"
        ),
        **report,
    }


def update_card(model_dir: Path, **fields: object) -> Path:
    """Replace top-level fields (``evaluation``, ``calibration``) of a verified card; ONNX untouched."""
    from service.model_card import write_card

    card = load_card(model_dir)
    return write_card(card.model_validate({**card.model_dump(), **fields}), model_dir)
