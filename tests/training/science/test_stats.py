"""The statistics of the science report against published values and a simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from training.science.stats import detectable_difference, family, holm, paired, verdict

# Student's sleep data (Cushny & Peebles 1905): extra hours of sleep, drug 1 and drug 2, same patients.
DRUG1 = np.array([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0])
DRUG2 = np.array([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])


def test_paired_t_matches_the_textbook_sleep_data() -> None:
    # R: t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833,
    # 95 percent CI -2.4598858 -0.7001142, mean difference -1.58
    r = paired(DRUG1, DRUG2)
    assert r.n == 10
    assert r.mean_diff == pytest.approx(-1.58)
    assert r.t == pytest.approx(-4.0621, abs=1e-4)
    assert r.p_t == pytest.approx(0.002833, abs=1e-6)
    assert (r.ci_low, r.ci_high) == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)
    assert r.dz == pytest.approx(-1.58 / np.std(DRUG1 - DRUG2, ddof=1))


def test_wilcoxon_exact_value_and_zero_differences() -> None:
    a = np.arange(1.0, 11.0)
    r = paired(a + np.arange(1.0, 11.0), a)  # ten positive, untied differences: p = 2 / 2**10
    assert r.p_wilcoxon == pytest.approx(2 / 2**10)
    same = paired(a, a.copy())
    assert (same.mean_diff, same.p_t, same.p_wilcoxon) == (0.0, 1.0, 1.0)


def test_holm_adjusts_like_r_p_adjust() -> None:
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") -> 0.03 0.06 0.06 0.02
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_detectable_difference_has_the_stated_power() -> None:
    n, sd, alpha = 10, 0.004, 0.05 / 8
    delta = detectable_difference(sd, n, alpha)
    rng = np.random.default_rng(0)
    d = rng.normal(delta, sd, size=(40_000, n))
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(n))
    power = np.mean(np.abs(t) > stats.t.ppf(1 - alpha / 2, n - 1))
    assert power == pytest.approx(0.8, abs=0.01)
    # G*Power, paired t, two-tailed, alpha 0.05, power 0.8, n = 10: d_z = 0.9962
    assert detectable_difference(1.0, 10, 0.05) == pytest.approx(0.996, abs=2e-3)
    assert detectable_difference(1.0, 40, 0.05) < detectable_difference(1.0, 10, 0.05)


def test_verdict_words_and_family() -> None:
    assert verdict(+0.01, 0.001, 0.01) == "supported"
    assert verdict(-0.01, 0.001, 0.01) == "contradicted"
    assert verdict(+0.01, 0.001, 0.2) == "undecided"  # the tests disagree
    assert verdict(+0.01, 0.2, 0.001) == "undecided"
    rng = np.random.default_rng(1)
    base = rng.normal(0.9, 0.01, 12)
    rows = [
        ("a much better", base + 0.02 + rng.normal(0, 0.002, 12), base),
        ("a much worse", base - 0.02 + rng.normal(0, 0.002, 12), base),
        ("no difference", base + rng.normal(0, 0.002, 12), base),
    ]
    out = family(rows)
    assert [r["verdict"] for r in out] == ["supported", "contradicted", "undecided"]
    assert all(r["p_t_holm"] >= r["p_t"] for r in out)
    assert out[0]["alpha_holm_strictest"] == pytest.approx(0.05 / 3)
