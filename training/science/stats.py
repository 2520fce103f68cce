"""Paired comparisons of two schemes over seeds: paired t and Wilcoxon signed-rank tests, Holm's
correction across the claims of an experiment, the mean difference with its 95 % interval, and
the smallest difference the design detects (80 % power at the Holm-corrected alpha).

Verdict of a claim "a beats b" (one row of the family):

- **supported**: the Holm-adjusted paired-t p < alpha and the Wilcoxon p (same Holm factor) < alpha,
  with ``mean(a - b) > 0``;
- **contradicted**: both below alpha with ``mean(a - b) < 0`` (b beats a);
- **undecided**: otherwise (including when the two tests disagree). Read it with the interval
  and the detectable difference: an undecided claim whose interval lies inside +/- the detectable
  difference means no difference that large exists at this budget.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats


@dataclass(frozen=True)
class Paired:
    n: int
    mean_diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    dz: float  # standardised paired effect: mean / sd of the differences
    t: float
    p_t: float
    p_wilcoxon: float

    def as_dict(self) -> dict:
        return asdict(self)


def paired(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> Paired:
    """Two-sided paired t test and Wilcoxon signed-rank test of ``a - b`` (same seeds, same order)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two paired 1-D samples of >= 2, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return Paired(n, mean, 0.0, mean, mean, math.nan, math.nan, 1.0 if mean == 0 else 0.0,
                      1.0 if mean == 0 else 0.0)  # fmt: skip
    se = sd / math.sqrt(n)
    t = mean / se
    p_t = float(2 * stats.t.sf(abs(t), n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    nonzero = d[d != 0]
    p_w = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return Paired(n, mean, sd, mean - half, mean + half, mean / sd, float(t), p_t, p_w)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (monotone, capped at 1), in the input order."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def detectable_difference(sd_diff: float, n: int, alpha: float, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t test at ``alpha`` finds with ``power``
    (exact, through the noncentral t distribution), for differences of std ``sd_diff``."""
    if n < 2 or not sd_diff > 0:
        return math.nan if n < 2 else 0.0
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def gap(delta: float) -> float:
        nc = delta * math.sqrt(n) / sd_diff
        got = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        return (1.0 if not np.isfinite(got) else float(got)) - power  # far in the tail: power 1

    hi = sd_diff
    while gap(hi) < 0:
        hi *= 2
    return float(optimize.brentq(gap, 0.0, hi, xtol=sd_diff * 1e-9))


def verdict(mean_diff: float, p_t_holm: float, p_w_holm: float, alpha: float = 0.05) -> str:
    if p_t_holm < alpha and p_w_holm < alpha:
        return "supported" if mean_diff > 0 else "contradicted"
    return "undecided"


def family(rows: list[tuple[str, np.ndarray, np.ndarray]], alpha: float = 0.05) -> list[dict]:
    """Compare every (name, a, b) claim "a > b"; Holm across the family, for both tests."""
    results = [paired(a, b) for _, a, b in rows]
    m = len(results)
    pt = holm([r.p_t for r in results])
    pw = holm([r.p_wilcoxon for r in results])
    out = []
    for (name, _, _), r, t_adj, w_adj in zip(rows, results, pt, pw, strict=True):
        out.append({
            "claim": name,
            **r.as_dict(),
            "p_t_holm": t_adj,
            "p_wilcoxon_holm": w_adj,
            # the design's detectable difference at the strictest Holm level (alpha / m)
            "detectable_difference": detectable_difference(r.sd_diff, r.n, alpha / m),
            "alpha_holm_strictest": alpha / m,
            "verdict": verdict(r.mean_diff, t_adj, w_adj, alpha),
        })  # fmt: skip
    return out
