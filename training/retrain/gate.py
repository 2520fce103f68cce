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
from training.evaluation.metrics import best_threshold, equal_error_rate, k_fold_accuracy, roc_auc, tar_at_far
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


# --- the adapter job's gate: paired bootstrap intervals of the improvement -------------------------

TARGET_FPIR = 0.01
BOOTSTRAP = 2000


@dataclass(frozen=True)
class OpenSetSplit:
    """Held-out organisation identities as /identify meets them: each enrolled identity's reference
    embedding in the gallery, its other photos as genuine probes, and stranger identities (never
    enrolled) whose photos must not be identified. Rows are embeddings of the model *before*."""

    gallery: np.ndarray  # (G, D)
    gallery_ids: np.ndarray  # (G,) str
    probes: np.ndarray  # (P, D)
    probe_ids: np.ndarray  # (P,) str, each one of gallery_ids
    strangers: np.ndarray  # (S, D)
    stranger_ids: np.ndarray  # (S,) str, none in gallery_ids
    probe_kind: str  # "real photos" or "augmented views"

    def counts(self) -> dict[str, int | str]:
        return {
            "enrolled_identities": len(self.gallery),
            "genuine_probes": len(self.probes),
            "stranger_identities": len(set(self.stranger_ids.tolist())),
            "stranger_probes": len(self.strangers),
            "probe_kind": self.probe_kind,
        }


def _best(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ gallery.T
    top = sims.argmax(1)
    return top, sims[np.arange(len(queries)), top]


def fpir_threshold(stranger_best: np.ndarray, weights: np.ndarray, fpir: float) -> float:
    """The lowest similarity at which at most ``fpir`` of the (weighted) strangers are identified."""
    order = np.argsort(-stranger_best, kind="stable")
    s, w = stranger_best[order], weights[order]
    allowed = fpir * w.sum()
    above = np.cumsum(w)  # strangers at or above s[i]
    over = np.flatnonzero(above > allowed + 1e-9)
    if len(over) == 0:
        return float("-inf")
    return float(np.nextafter(s[over[0]], np.inf))


@dataclass(frozen=True)
class Scored:
    correct: np.ndarray  # (P,) bool: the nearest enrolled person is the right one
    sim: np.ndarray  # (P,) its similarity
    stranger_best: np.ndarray  # (S,) each stranger's best similarity


def score_open_set(split: OpenSetSplit, transform) -> Scored:
    """Scores of the held-out protocol after ``transform`` (embeddings -> embeddings)."""
    g = transform(split.gallery)
    top, sim = _best(transform(split.probes), g)
    _, stranger_best = _best(transform(split.strangers), g)
    return Scored(split.gallery_ids[top] == split.probe_ids, sim, stranger_best)


def _dir(s: Scored, probe_w: np.ndarray, stranger_w: np.ndarray, fpir: float) -> float:
    t = fpir_threshold(s.stranger_best, stranger_w, fpir)
    return float(((s.correct & (s.sim >= t)) * probe_w).sum() / probe_w.sum())


@dataclass(frozen=True)
class Interval:
    metric: str
    before: float
    after: float
    low: float  # 95 % paired bootstrap interval of after - before
    high: float
    unit: str  # what was resampled

    @property
    def change(self) -> float:
        return self.after - self.before

    def as_dict(self) -> dict:
        return {"metric": self.metric, "before": round(self.before, 6), "after": round(self.after, 6),
                "change": round(self.change, 6), "interval_low": round(self.low, 6),
                "interval_high": round(self.high, 6), "resampled": self.unit}  # fmt: skip


def _groups(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, inverse = np.unique(ids, return_inverse=True)
    return names, inverse


def open_set_interval(
    split: OpenSetSplit, before: Scored, after: Scored, seed: int, fpir: float = TARGET_FPIR,
    n_boot: int = BOOTSTRAP,
) -> Interval:  # fmt: skip
    """Open-set identification rate at FPIR ``fpir`` before and after, and the 95 % interval of
    the paired change: each bootstrap draw resamples the enrolled identities (with their probes)
    and the stranger identities (with their photos), the FPIR threshold recomputed from the drawn
    strangers for each model."""
    rng = np.random.default_rng(seed)
    _, p_inv = _groups(split.probe_ids)
    _, s_inv = _groups(split.stranger_ids)
    n_p, n_s = int(p_inv.max()) + 1, int(s_inv.max()) + 1
    ones_p, ones_s = np.ones(len(p_inv)), np.ones(len(s_inv))
    b0, a0 = _dir(before, ones_p, ones_s, fpir), _dir(after, ones_p, ones_s, fpir)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        wp = np.bincount(rng.integers(0, n_p, n_p), minlength=n_p)[p_inv].astype(np.float64)
        ws = np.bincount(rng.integers(0, n_s, n_s), minlength=n_s)[s_inv].astype(np.float64)
        if wp.sum() == 0 or ws.sum() == 0:
            diffs[k] = 0.0
            continue
        diffs[k] = _dir(after, wp, ws, fpir) - _dir(before, wp, ws, fpir)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return Interval(f"open-set identification rate at FPIR {fpir:g}", b0, a0, float(low), float(high),
                    "held-out identities (enrolled and strangers)")  # fmt: skip


def pair_accuracy_interval(
    before: np.ndarray,
    after: np.ndarray,
    same: np.ndarray,
    seed: int,
    folds: int = 10,
    n_boot: int = BOOTSTRAP,
) -> Interval:
    """Verification accuracy (threshold from the other folds, LFW's protocol) before and after,
    and the 95 % paired bootstrap interval of the change over pairs."""
    fold = np.arange(len(same)) % folds

    def correct(scores: np.ndarray) -> np.ndarray:
        out = np.zeros(len(scores), bool)
        for f in range(folds):
            test = fold == f
            t = best_threshold(scores[~test], same[~test])
            out[test] = (scores[test] >= t) == same[test]
        return out

    cb, ca = correct(np.asarray(before, np.float64)), correct(np.asarray(after, np.float64))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(same), (n_boot, len(same)))
    diffs = (ca[idx].astype(np.float64) - cb[idx]).mean(axis=1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return Interval(
        "LFW View 1 test accuracy", float(cb.mean()), float(ca.mean()), float(low), float(high), "pairs"
    )


@dataclass(frozen=True)
class Decision:
    publish: bool
    decided_by: str  # which test decided
    reasons: list[str]


def statistical_gate(org: Interval, lfw: Interval | None) -> Decision:
    """Publish only when the organisation's improvement has a 95 % interval above zero and the
    general-accuracy check (LFW View 1) shows no drop: its interval not wholly below zero."""
    reasons = []
    if org.low <= 0:
        reasons.append(
            f"held-out organisation identities: {org.metric} {org.before:.4f} -> {org.after:.4f}, 95 % interval "
            f"of the change [{org.low:+.4f}, {org.high:+.4f}] is not above zero"
        )
    if lfw is not None and lfw.high < 0:
        reasons.append(
            f"general accuracy: {lfw.metric} {lfw.before:.4f} -> {lfw.after:.4f}, 95 % interval of the change "
            f"[{lfw.low:+.4f}, {lfw.high:+.4f}] is below zero"
        )
    if not reasons:
        lfw_note = (
            "" if lfw is None else f"; LFW View 1 change [{lfw.low:+.4f}, {lfw.high:+.4f}] shows no drop"
        )
        return Decision(True, "organisation improvement interval above zero" + lfw_note, [])
    decided = "organisation improvement interval" if org.low <= 0 else "LFW View 1 accuracy interval"
    return Decision(False, decided, reasons)
