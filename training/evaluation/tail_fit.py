"""The impostor tail past what impostor pairs can measure: a fitted generalised Pareto tail.

``/identify`` over N people needs a threshold at the per-comparison false-accept rate FPIR / N:
1e-8 at a million people and FPIR 1 %. Tens of millions of impostor pairs measure rates down to
about 1e-6 (``service.calibration.measured_far_table``: at least ten pairs above the threshold).
Beyond that the card can carry a fitted tail (``service.model_card.FittedTail``), made here:

* **Model**: peaks over a threshold. The impostor similarities above ``u`` (the threshold at
  ``u_far``, 1e-4 by default: thousands of pairs) follow a generalised Pareto distribution
  (Pickands-Balkema-de Haan); shape ``xi`` and scale ``sigma`` by maximum likelihood
  (``scipy.stats.genpareto.fit`` with location 0). A rate ``f`` then has the threshold
  ``u + GPD.isf(f / p_u)``, ``p_u`` the share of pairs above ``u``.
* **Held-out check, and the margin it sets**: 20 times, the same method on a random 1 % of the
  pairs, thresholded at their own 1e-3, predicts the thresholds that all the pairs measure two to
  three decades further out, where the 1 % holds almost no pairs. The most its upper bound fell
  short of a measured threshold is the ``margin``.
* **What the service uses**: the upper end of a 95 % bootstrap interval (pairs above ``u``
  resampled, ``p_u`` redrawn binomially, refitted) plus the margin, so the error is on the strict
  side, and never looser than the strictest measured threshold (``Calibration.thresholds``).
* **How far**: down to ``STRICTEST_FITTED`` (1e-8), two decades past the measured table.
* **Reported fit**: the Kolmogorov-Smirnov distance of the pairs above ``u`` to the fit, the fit
  against the measured thresholds below ``u`` (in sample), and the held-out checks.

Similarities come binned (``ImpostorTail``, width 1e-5); each pair is placed at its bin's
centre, an error far below the fit's own uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

from service.calibration import ImpostorTail
from service.model_card import FarPoint, FittedTail, TailCheck

FITTED_GRID: tuple[float, ...] = (5e-7, 2e-7, 1e-7, 5e-8, 2e-8, 1e-8)
STRICTEST_FITTED = min(FITTED_GRID)


def _exceedances(tail: ImpostorTail, u_far: float) -> tuple[float, np.ndarray]:
    """``(u, similarities above u minus u)`` with each pair at its bin's centre."""
    u = tail.threshold_at(u_far)
    j = int(round((u + 1.0) / tail.bin_width))
    counts = tail.counts[j:]
    centres = (np.arange(len(counts)) + 0.5) * tail.bin_width
    return u, np.repeat(centres, counts)


def _fit(y: np.ndarray) -> tuple[float, float]:
    shape, _, scale = stats.genpareto.fit(y, floc=0.0)
    return float(shape), float(scale)


def _threshold(u: float, p_u: float, shape: float, scale: float, far: float) -> float:
    return float(u + stats.genpareto.isf(far / p_u, shape, 0.0, scale))


def _fit_and_bound(
    y: np.ndarray, total: int, u: float, rates: Sequence[float], boot: int, rng: np.random.Generator
) -> tuple[float, float, list[float], np.ndarray]:
    """``(shape, scale, point thresholds, upper 95 % bounds)`` at ``rates``."""
    p_u = len(y) / total
    shape, scale = _fit(y)
    estimate = [_threshold(u, p_u, shape, scale, f) for f in rates]
    boots = np.empty((boot, len(rates)))
    for k in range(boot):
        yk = rng.choice(y, size=len(y), replace=True)
        pk = rng.binomial(total, p_u) / total
        sk, ck = _fit(yk)
        boots[k] = [_threshold(u, pk, sk, ck, f) for f in rates]
    return shape, scale, estimate, np.quantile(boots, 0.975, axis=0)


def fit_tail(
    tail: ImpostorTail,
    measured: Sequence[FarPoint] = (),
    fars: Sequence[float] = FITTED_GRID,
    u_far: float = 1e-4,
    boot: int = 200,
    held_out_fraction: float = 0.01,
    held_out_u_far: float = 1e-3,
    repeats: int = 20,
    seed: int = 0,
) -> FittedTail:
    """A generalised Pareto fit to ``tail`` above its ``u_far`` threshold, tabulated at ``fars``;
    ``measured`` (the measured table) is what the fit is checked against. The table's thresholds
    are the bootstrap upper bounds plus the margin the held-out check needed."""
    total = tail.total
    u, y = _exceedances(tail, u_far)
    if len(y) < 100:
        raise ValueError(f"{len(y)} impostor pairs above the {u_far:g} threshold are too few to fit a tail")
    p_u = len(y) / total
    rng = np.random.default_rng(seed)
    rates = sorted(fars, reverse=True)
    shape, scale, estimate, upper = _fit_and_bound(y, total, u, rates, boot, rng)
    ks = float(stats.kstest(y, "genpareto", args=(shape, 0.0, scale)).statistic)
    in_sample = [
        TailCheck(far=p.far, measured=p.similarity, fitted=round(_threshold(u, p_u, shape, scale, p.far), 5))
        for p in measured
        if p.far < u_far
    ]
    held_out = _held_out_check(
        tail, measured, held_out_fraction, held_out_u_far, max(boot // 2, 20), repeats, rng
    )
    margin = max((c.worst_shortfall or 0.0 for c in held_out), default=0.0)
    return FittedTail(
        threshold=round(u, 6),
        far_at_threshold=p_u,
        exceedances=len(y),
        shape=round(shape, 6),
        scale=round(scale, 6),
        ks_distance=round(ks, 4),
        margin=round(margin, 5),
        table=[
            FarPoint(far=f, similarity=round(min(float(t) + margin, 1.0), 5)) for f, t in zip(rates, upper)
        ],
        estimate=[FarPoint(far=f, similarity=round(t, 5)) for f, t in zip(rates, estimate)],
        in_sample=in_sample,
        held_out=held_out,
        about=(
            f"generalised Pareto (maximum likelihood, location 0) fitted to the {len(y):,} of "
            f"{total:,} impostor pairs above similarity {u:.4f} (the {u_far:g} threshold); table: "
            f"upper end of a 95 % interval from {boot} bootstrap refits plus a margin of {margin:.4f}, "
            f"the most by which the same method fell short in {repeats} held-out checks (each fitted "
            f"on a random {held_out_fraction:.0%} of the pairs above their own {held_out_u_far:g} "
            "threshold and compared with every pair's measured thresholds two to three decades out)"
        ),
    )


def _held_out_check(
    tail: ImpostorTail,
    measured: Sequence[FarPoint],
    fraction: float,
    u_far: float,
    boot: int,
    repeats: int,
    rng: np.random.Generator,
) -> list[TailCheck]:
    """``repeats`` times: fit on a random share of the pairs and compare with every pair's
    measured thresholds two decades and more past the share's own ``u_far`` threshold."""
    far_rows = [p for p in measured if p.far <= u_far / 100]
    if not far_rows:
        return []
    estimates, uppers = [], []
    for _ in range(repeats):
        sub = ImpostorTail(tail.bin_width)
        sub.counts = rng.binomial(tail.counts, fraction)
        u, y = _exceedances(sub, u_far)
        if len(y) < 100:
            return []
        _, _, estimate, upper = _fit_and_bound(y, sub.total, u, [p.far for p in far_rows], boot, rng)
        estimates.append(estimate)
        uppers.append(upper)
    est, up = np.array(estimates), np.array(uppers)
    truth = np.array([p.similarity for p in far_rows])
    short = np.maximum(truth[None, :] - up, 0.0)
    return [
        TailCheck(
            far=p.far,
            measured=p.similarity,
            fitted=round(float(np.median(est[:, i])), 5),
            upper=round(float(np.median(up[:, i])), 5),
            covered=round(float(np.mean(up[:, i] >= truth[i])), 4),
            worst_shortfall=round(float(short[:, i].max()), 5),
        )
        for i, p in enumerate(far_rows)
    ]
