"""Calibration maths (numpy only, shared by the service and the training package).

* ``a, b`` of ``score = sigmoid(a * cos + b)``: logistic regression of same/different on cosine
  similarity (Newton / IRLS) over labelled pairs.
* ``far_table``: for each false-accept rate ``f`` the similarity ``t`` such that at most a share
  ``f`` of impostor pairs score at or above ``t``, estimated from every cross-identity pair of
  labelled image sets, so that /identify can look up ``f = FPIR / N``. A rate is tabulated only
  when at least ``min_tail`` impostor pairs lie above its threshold (``measured_far_table``: the
  one policy for the strict end, used by every calibration).

Similarities are accumulated in a histogram of width ``1e-5`` on [-1, 1]; a threshold is the
upper edge of its bin, so it errs on the strict side by less than 1e-5.

``training.evaluation.calibration`` re-exports these names; the service never imports torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.model_card import Calibration, FarPoint

log = logging.getLogger(__name__)

FAR_GRID: tuple[float, ...] = (
    1e-1, 5e-2, 2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5, 2e-5, 1e-5, 5e-6, 2e-6, 1e-6,
)  # fmt: skip


def fit_logistic(
    scores: np.ndarray, labels: np.ndarray, ridge: float = 1e-6, max_iter: int = 100
) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(same | s) = sigmoid(a s + b)`` by Newton's method.

    A tiny ridge penalty keeps the solution finite when the two classes are separable.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1 or not 0 < y.sum() < len(y):
        raise ValueError("need 1-d scores and labels with both classes present")
    x = np.stack([s, np.ones_like(s)], axis=1)
    w = np.zeros(2)
    for _ in range(max_iter):
        z = x @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, overflow-free
        grad = x.T @ (p - y) + ridge * len(s) * w
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + ridge * len(s) * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(w[0]), float(w[1])


class ImpostorTail:
    """A fine histogram of impostor similarities, filled block by block (memory stays small)."""

    def __init__(self, bin_width: float = 1e-5) -> None:
        self.bin_width = bin_width
        self.n_bins = int(round(2.0 / bin_width)) + 1
        self.counts = np.zeros(self.n_bins, dtype=np.int64)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def add(self, similarities: np.ndarray) -> None:
        s = np.clip(np.asarray(similarities, dtype=np.float64).ravel(), -1.0, 1.0)
        idx = np.minimum(((s + 1.0) / self.bin_width).astype(np.int64), self.n_bins - 1)
        self.counts += np.bincount(idx, minlength=self.n_bins)

    def add_within(self, emb: np.ndarray, labels: Sequence[str] | np.ndarray, block: int = 2048) -> int:
        """Every pair ``i < j`` of ``emb`` rows with different labels; returns how many."""
        emb = np.asarray(emb, dtype=np.float32)
        lab = np.unique(np.asarray(labels), return_inverse=True)[1]
        before = self.total
        for i0 in range(0, len(emb), block):
            for j0 in range(i0, len(emb), block):
                sim = emb[i0 : i0 + block] @ emb[j0 : j0 + block].T
                mask = lab[i0 : i0 + block, None] != lab[None, j0 : j0 + block]
                if i0 == j0:
                    mask &= np.triu(np.ones_like(mask), k=1)
                self.add(sim[mask])
        return self.total - before

    def add_across(self, emb_a: np.ndarray, emb_b: np.ndarray, block: int = 2048) -> int:
        """Every pair of one row of ``emb_a`` and one of ``emb_b`` (sets of different people)."""
        before = self.total
        a = np.asarray(emb_a, dtype=np.float32)
        b = np.asarray(emb_b, dtype=np.float32)
        for i0 in range(0, len(a), block):
            self.add(a[i0 : i0 + block] @ b.T)
        return self.total - before

    def merge(self, other: ImpostorTail) -> None:
        if other.n_bins != self.n_bins:
            raise ValueError("cannot merge tails with different bins")
        self.counts += other.counts

    def count_above(self, similarity: float) -> int:
        j = int(np.ceil((similarity + 1.0) / self.bin_width - 1e-9))
        return int(self.counts[max(j, 0) :].sum())

    def threshold_at(self, far: float) -> float:
        """The smallest bin edge ``t`` with at most ``far * total`` impostor similarities ``>= t``."""
        tail = np.cumsum(self.counts[::-1])[::-1]  # tail[j] = count in bins >= j
        ok = np.flatnonzero(tail <= far * self.total)
        j = int(ok[0]) if len(ok) else self.n_bins
        return min(-1.0 + j * self.bin_width, 1.0)

    def far_table(self, fars: Sequence[float] = FAR_GRID, min_tail: int = 10) -> list[FarPoint]:
        """``[{far, similarity}]`` far descending; only rates with ``far * total >= min_tail``."""
        rows = [f for f in sorted(fars, reverse=True) if f * self.total >= min_tail]
        return [FarPoint(far=f, similarity=round(self.threshold_at(f), 6)) for f in rows]


def measured_far_table(
    tail: ImpostorTail, fars: Sequence[float] = FAR_GRID, min_tail: int = 10
) -> tuple[list[FarPoint], str]:
    """The false-accept table of a model version and the sentence its card states about it.

    The one policy for the strict end: every threshold comes from impostor pairs that were
    measured for this model version, and only for the rates those pairs support (at least
    ``min_tail`` pairs above the threshold). Where the data cannot support a rate the table
    stops; nothing is inherited from a parent model or another calibration. The service uses the
    strictest measured threshold below that and says so in the decision's ``threshold_basis``.
    """
    table = tail.far_table(fars, min_tail)
    if not table:
        return [], f"{tail.total} impostor pairs are too few to tabulate any false-accept rate"
    strictest = table[-1].far
    note = f"far_table measured on {tail.total} impostor pairs down to {strictest:g}"
    finer = [f for f in fars if f < strictest]
    if finer:
        need = int(np.ceil(min_tail / max(finer)))
        note += (
            f"; stricter rates are not tabulated (the next, {max(finer):g}, needs at least {need} "
            f"impostor pairs: {min_tail} above its threshold)"
        )
    return table, note


def make_calibration(
    genuine_scores: np.ndarray,
    impostor_scores: np.ndarray,
    tail: ImpostorTail,
    data: str,
    fars: Sequence[float] = FAR_GRID,
    min_tail: int = 10,
    **extra: Any,
) -> Calibration:
    """A model card's calibration from labelled pair scores (for ``a, b``) and an impostor tail."""
    g = np.asarray(genuine_scores, dtype=np.float64)
    i = np.asarray(impostor_scores, dtype=np.float64)
    a, b = fit_logistic(np.concatenate([g, i]), np.concatenate([np.ones(len(g)), np.zeros(len(i))]))
    table, note = measured_far_table(tail, fars, min_tail)
    if not table:
        raise ValueError(note)
    log.info(
        "calibration a=%.4f b=%.4f from %d+%d pairs; far table down to %g",
        a,
        b,
        len(g),
        len(i),
        table[-1].far,
    )
    return Calibration(
        a=round(a, 6),
        b=round(b, 6),
        far_table=table,
        data=f"{data}; {note}",
        genuine_pairs=len(g),
        impostor_pairs=tail.total,
        **extra,
    )
