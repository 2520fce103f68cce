"""Evaluating the current and the candidate model on the same held-out data, and the publishing gate.

Held-out pairs (identity-disjoint from the training crops). The gallery holds one photo per
person, so it alone has no genuine pair: each held-out crop is seen in two augmented views
(seeded), and the two views of one crop are a genuine pair; two photos of one identity from an
extra folder are a real genuine pair; views of two different identities are impostor pairs. The
augmented-view pairs measure robustness to pose, light and framing changes of the kind the
augmentation makes, not the whole variation between two photos of a person: the real pairs
from extra folders and LFW View 1 (``pairsDevTest.txt``, when ``FACEGATE_DATA`` holds LFW)
are what tell about that.

Both models are evaluated through their ONNX files (what the service runs). The gate refuses
the candidate when any metric is worse than the current model's by more than the tolerance.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.pipeline.embed import Embedder
from training.data.augment import Augment, to_float_nchw
from training.evaluation.metrics import equal_error_rate, k_fold_accuracy, roc_auc, tar_at_far
from training.retrain.data import Crops

log = logging.getLogger(__name__)

HIGHER_IS_BETTER = {"accuracy": True, "auc": True, "eer": False, "tar@far=1e-2": True, "tar@far=1e-3": True}
MAX_IMPOSTORS = 50_000


@dataclass(frozen=True)
class HeldOutPairs:
    views: np.ndarray  # uint8 [2N, H, W, 3]: first view of every crop, then second view
    i: np.ndarray
    j: np.ndarray
    same: np.ndarray
    kinds: dict[str, int]  # pairs of each kind


def augmented_views(crops: np.ndarray, augment: Augment, seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    x = to_float_nchw(torch.from_numpy(np.ascontiguousarray(crops)))
    views = [augment(x.clone(), gen) for _ in range(2)]
    out = torch.cat(views).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return out.numpy()


def held_out_pairs(data: Crops, augment: Augment, seed: int) -> HeldOutPairs:
    n = len(data)
    views = augmented_views(data.crops, augment, seed)
    ids = data.identities
    gi, gj = list(range(n)), list(range(n, 2 * n))  # the two views of each crop
    real = [(a, b) for a in range(n) for b in range(a + 1, n) if ids[a] == ids[b]]
    # impostor pairs: every cross-identity pair of all 2n views (distinct images), so that the
    # candidate's false-accept table is measured on as many pairs as the held-out people allow
    both = np.concatenate([ids, ids])
    iu, ju = np.triu_indices(2 * n, k=1)
    imp = both[iu] != both[ju]
    iu, ju = iu[imp], ju[imp]
    if len(iu) > MAX_IMPOSTORS:
        keep = np.sort(np.random.default_rng(seed).choice(len(iu), MAX_IMPOSTORS, replace=False))
        iu, ju = iu[keep], ju[keep]
    i = np.concatenate([gi, [a for a, _ in real], iu]).astype(np.int64)
    j = np.concatenate([gj, [b for _, b in real], ju]).astype(np.int64)
    same = np.concatenate([np.ones(n + len(real), bool), np.zeros(len(iu), bool)])
    kinds = {"augmented_view_genuine": n, "real_genuine": len(real), "impostor": len(iu)}
    return HeldOutPairs(views, i, j, same, kinds)


def pair_metrics(scores: np.ndarray, same: np.ndarray, folds: int = 5) -> dict[str, float]:
    """Accuracy (threshold chosen on the other folds), ROC AUC, EER and TAR at FAR where estimable."""
    scores = np.asarray(scores, np.float64)
    fold = np.arange(len(scores)) % folds
    out = {
        "accuracy": k_fold_accuracy(scores, same, fold).mean,
        "auc": roc_auc(scores, same),
        "eer": equal_error_rate(scores, same)[0],
    }
    n_imp = int((~same).sum())
    for far, label in ((1e-2, "tar@far=1e-2"), (1e-3, "tar@far=1e-3")):
        if far * n_imp >= 10:
            out[label] = tar_at_far(scores, same, far)[0]
    return {k: round(float(v), 6) for k, v in out.items()}


def score_pairs(model_dir: Path, pairs: HeldOutPairs) -> np.ndarray:
    emb = Embedder(model_dir).embed(pairs.views)
    return np.sum(emb[pairs.i] * emb[pairs.j], axis=1)


def lfw_view1_scores(model_dir: Path, data_dir: Path, models_dir: Path, cache_dir: Path):
    """Cosine scores and labels of LFW View 1's test pairs (``pairsDevTest.txt``) through the pipeline."""
    from training.evaluation.embedding_cache import embed_images
    from training.evaluation.evaluate import pair_scores
    from training.evaluation.pairs import read_lfw_pairs

    pairs = read_lfw_pairs(data_dir / "lfw" / "pairsDevTest.txt")
    emb = embed_images(data_dir / "lfw" / "images", pairs.keys, model_dir, models_dir, cache_dir)
    scores, ok = pair_scores(pairs, emb)
    return scores[ok], pairs.labels[ok]


def gate(current: dict[str, dict], candidate: dict[str, dict], tolerance: float) -> tuple[bool, list[dict]]:
    """Compare every metric of every evaluation; ok when none regresses by more than ``tolerance``."""
    checks = []
    for dataset, metrics in current.items():
        for name, before in metrics.items():
            after = candidate[dataset][name]
            better = HIGHER_IS_BETTER[name]
            delta = after - before if better else before - after  # > 0: the candidate is better
            checks.append(
                {
                    "dataset": dataset,
                    "metric": name,
                    "current": before,
                    "candidate": after,
                    "improvement": round(delta, 6),
                    "ok": bool(delta >= -tolerance),
                }  # fmt: skip
            )
    return all(c["ok"] for c in checks), checks


def reasons(checks: list[dict], tolerance: float) -> list[str]:
    return [
        f"{c['dataset']} {c['metric']}: {c['candidate']:.4f} vs {c['current']:.4f} for the current model "
        f"(worse by {-c['improvement']:.4f} > tolerance {tolerance})"
        for c in checks
        if not c["ok"]
    ]
