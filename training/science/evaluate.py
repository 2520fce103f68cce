"""Scores of one set of test embeddings: LFW View 2 10-fold accuracy (threshold chosen on the
other 9 folds), and TAR at FAR 1e-3 over ALL pairs of the test images: every cross-identity pair
is an impostor (about 29.6 million for View 2's 7,701 images, so the 1e-3 tail holds ~30,000
scores instead of View 2's 3 of 3,000) and every same-identity pair a genuine one."""

from __future__ import annotations

import numpy as np

from training.evaluation.metrics import k_fold_accuracy, roc_auc
from training.evaluation.pairs import PairSet


def view2_scores(emb: np.ndarray, keys: list[str], pairs: PairSet) -> np.ndarray:
    idx = {k: i for i, k in enumerate(keys)}
    a = emb[[idx[p.a] for p in pairs.pairs]].astype(np.float64)
    b = emb[[idx[p.b] for p in pairs.pairs]].astype(np.float64)
    return np.sum(a * b, axis=1)


def all_pairs_tar(
    emb: np.ndarray, labels: np.ndarray, far: float = 1e-3, block: int = 1024
) -> dict[str, float]:
    """TAR at ``far`` over every pair i < j: accept ``score > threshold`` where the threshold is the
    ``floor(far * n_impostor) + 1``-th highest impostor score (as ``metrics.tar_at_far``).

    Rows are scored in blocks; each block keeps only its ``k + 1`` highest impostor scores, which
    is all the threshold needs (the full 7,701 x 7,701 matrix and its masks are never held)."""
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(labels)
    same_total = sum(c * (c - 1) // 2 for c in np.unique(labels, return_counts=True)[1])
    n_imp = n * (n - 1) // 2 - int(same_total)
    k = int(np.floor(far * n_imp + 1e-9))
    genuine, tops = [], []
    cols = np.arange(n)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        sims = emb[rows] @ emb.T
        keep = cols[None, :] > rows[:, None]
        same = labels[rows][:, None] == labels[None, :]
        genuine.append(sims[keep & same])
        imp = sims[keep & ~same]
        tops.append(imp if imp.size <= k + 1 else np.partition(imp, imp.size - k - 1)[imp.size - k - 1 :])
    top = np.concatenate(tops)
    thr = float(np.partition(top, top.size - 1 - k)[top.size - 1 - k])
    gen = np.concatenate(genuine)
    return {"tar": float(np.mean(gen > thr)), "threshold": thr, "genuine_pairs": int(gen.size),
            "impostor_pairs": n_imp}  # fmt: skip


def score(emb: np.ndarray, keys: list[str], labels: np.ndarray, pairs: PairSet) -> dict[str, float]:
    s = view2_scores(emb, keys, pairs)
    kf = k_fold_accuracy(s, pairs.labels, pairs.folds)
    tar = all_pairs_tar(emb, labels)
    return {
        "lfw_accuracy": float(kf.mean),
        "lfw_fold_std": float(kf.std),
        "lfw_roc_auc": float(roc_auc(s, pairs.labels)),
        "tar_at_far_1e-3": tar["tar"],
        "tar_threshold": tar["threshold"],
        "tar_genuine_pairs": tar["genuine_pairs"],
        "tar_impostor_pairs": tar["impostor_pairs"],
    }
