"""Verification metrics on pair scores (higher score = more likely the same person).

Conventions: a pair is accepted when ``score >= threshold`` for the accuracy thresholds (chosen
half-way between two observed scores, so ties never straddle them), and when ``score > threshold``
for TAR at a false-accept rate, where the threshold is an impostor score (the strict reading: at
most ``far`` of the impostor pairs score above it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class FoldAccuracy:
    accuracies: np.ndarray  # per test fold
    thresholds: np.ndarray  # chosen on the other folds

    @property
    def mean(self) -> float:
        return float(self.accuracies.mean())

    @property
    def std(self) -> float:
        """Sample standard deviation over the folds (ddof=1, as LFW's README defines it)."""
        return float(self.accuracies.std(ddof=1)) if len(self.accuracies) > 1 else 0.0


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be equal 1-d shapes")
    if not labels.any() or labels.all():
        raise ValueError("need both genuine (True) and impostor (False) pairs")
    return scores[labels], scores[~labels]


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(scores) >= threshold) == np.asarray(labels, dtype=bool)))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold of highest accuracy; among equally good cuts, the middle one.

    Candidate thresholds lie half-way between consecutive distinct scores (and beyond both ends).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    uniq = np.unique(scores)
    cands = np.concatenate([[uniq[0] - 1.0], (uniq[1:] + uniq[:-1]) / 2, [uniq[-1] + 1.0]])
    order = np.argsort(scores)
    s, y = scores[order], labels[order]
    # below[k] = how many pairs score below cands[k]
    below = np.searchsorted(s, cands, side="left")
    neg_below = np.concatenate([[0], np.cumsum(~y)])[below]
    pos_at_or_above = labels.sum() - np.concatenate([[0], np.cumsum(y)])[below]
    correct = neg_below + pos_at_or_above
    best = np.flatnonzero(correct == correct.max())
    return float(cands[best[len(best) // 2]])


def k_fold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> FoldAccuracy:
    """LFW's protocol: for each fold, the threshold is chosen on the other folds and tested on it."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    folds = np.asarray(folds)
    ids = np.unique(folds)
    if len(ids) < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accs, thrs = [], []
    for f in ids:
        test = folds == f
        t = best_threshold(scores[~test], labels[~test])
        thrs.append(t)
        accs.append(accuracy_at(scores[test], labels[test], t))
    return FoldAccuracy(np.array(accs), np.array(thrs))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties count one half)."""
    gen, imp = _split(scores, labels)
    ranks = rankdata(np.concatenate([gen, imp]))
    return float((ranks[: len(gen)].sum() - len(gen) * (len(gen) + 1) / 2) / (len(gen) * len(imp)))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(far, tar, thresholds)``: accepting ``score >= thresholds[i]`` gives ``far[i]``, ``tar[i]``.

    Thresholds are the distinct scores in decreasing order, preceded by +inf (nothing accepted).
    """
    gen, imp = _split(scores, labels)
    thr = np.concatenate([[np.inf], np.unique(np.concatenate([gen, imp]))[::-1]])
    g, i = np.sort(gen), np.sort(imp)
    tar = (len(g) - np.searchsorted(g, thr, side="left")) / len(g)
    far = (len(i) - np.searchsorted(i, thr, side="left")) / len(i)
    return far, tar, thr


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)`` where the false-accept and false-reject rates meet.

    The crossing is interpolated linearly along the ROC segment where ``far - frr`` changes sign;
    the threshold is interpolated the same way (the upper end when the crossing is at +inf).
    """
    far, tar, thr = roc_curve(scores, labels)
    frr = 1.0 - tar
    diff = far - frr  # increases from -1 (nothing accepted) to +1 (everything accepted)
    k = int(np.flatnonzero(diff >= 0)[0])
    if diff[k] == 0 or k == 0:
        return float(far[k]), float(thr[k])
    t = -diff[k - 1] / (diff[k] - diff[k - 1])
    eer = far[k - 1] + t * (far[k] - far[k - 1])
    hi = thr[k - 1] if np.isfinite(thr[k - 1]) else thr[k]
    return float(eer), float(hi + t * (thr[k] - hi))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """``(tar, threshold)``: the highest true-accept rate with at most ``far`` of impostors accepted.

    Accepting ``score > threshold`` where ``threshold`` is the ``floor(far * n_impostor) + 1``-th
    highest impostor score.
    """
    gen, imp = _split(scores, labels)
    if not 0 < far < 1:
        raise ValueError(f"far must be in (0, 1), got {far}")
    k = int(np.floor(far * len(imp) + 1e-9))
    thr = float(np.sort(imp)[::-1][k])
    return float(np.mean(gen > thr)), thr


@dataclass(frozen=True)
class VerificationReport:
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, dict[str, float]]
    genuine_pairs: int
    impostor_pairs: int

    def to_dict(self) -> dict:
        return {
            "accuracy_mean": round(self.accuracy_mean, 6),
            "accuracy_std": round(self.accuracy_std, 6),
            "accuracy_sem": round(self.accuracy_std / np.sqrt(len(self.fold_accuracies)), 6),
            "fold_accuracies": [round(a, 6) for a in self.fold_accuracies],
            "fold_thresholds": [round(t, 6) for t in self.fold_thresholds],
            "roc_auc": round(self.auc, 6),
            "eer": round(self.eer, 6),
            "eer_threshold": round(self.eer_threshold, 6),
            "tar_at_far": self.tar_at_far,
            "genuine_pairs": self.genuine_pairs,
            "impostor_pairs": self.impostor_pairs,
        }


def verification_report(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, fars: tuple[float, ...] = (1e-2, 1e-3)
) -> VerificationReport:
    """All the protocol's figures for one set of scored pairs."""
    labels = np.asarray(labels, dtype=bool)
    kf = k_fold_accuracy(scores, labels, folds)
    eer, eer_t = equal_error_rate(scores, labels)
    tars: dict[str, dict[str, float]] = {}
    for f in fars:
        tar, thr = tar_at_far(scores, labels, f)
        tars[f"{f:g}"] = {"tar": round(tar, 6), "threshold": round(thr, 6)}
    return VerificationReport(
        accuracy_mean=kf.mean,
        accuracy_std=kf.std,
        fold_accuracies=kf.accuracies.tolist(),
        fold_thresholds=kf.thresholds.tolist(),
        auc=roc_auc(scores, labels),
        eer=eer,
        eer_threshold=eer_t,
        tar_at_far=tars,
        genuine_pairs=int(labels.sum()),
        impostor_pairs=int((~labels).sum()),
    )
