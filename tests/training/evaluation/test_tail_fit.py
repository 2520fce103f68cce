"""The fitted impostor tail (training.evaluation.tail_fit) against distributions whose tail is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from service.calibration import ImpostorTail, measured_far_table
from training.evaluation.tail_fit import FITTED_GRID, fit_tail

MEAN, STD = 0.1, 0.09  # about the spread of real impostor cosines (SFace: 0.099, 0.092)


@pytest.fixture(scope="module")
def gaussian_tail() -> ImpostorTail:
    rng = np.random.default_rng(1)
    tail = ImpostorTail()
    for _ in range(20):
        tail.add(rng.normal(MEAN, STD, 10**6))
    return tail


def truth(far: float) -> float:
    return MEAN + STD * stats.norm.isf(far)


def test_the_fit_extrapolates_a_known_tail_and_its_table_errs_on_the_strict_side(gaussian_tail):
    table, _ = measured_far_table(gaussian_tail)
    fit = fit_tail(gaussian_tail, table, boot=100)
    assert fit.exceedances == pytest.approx(2000, rel=0.05) and fit.ks_distance < 0.03
    assert [p.far for p in fit.table] == sorted(FITTED_GRID, reverse=True)
    for point, upper in zip(fit.estimate, fit.table):
        assert point.similarity == pytest.approx(truth(point.far), abs=0.01)  # 2 decades past 1e-6
        assert upper.similarity >= truth(point.far) - 0.002  # what the service uses: not looser
        assert upper.similarity >= point.similarity
    sims = [p.similarity for p in fit.table]
    assert sims == sorted(sims)  # stricter rate, higher threshold
    for check in fit.in_sample:  # the measured thresholds below u, reproduced by the fit
        assert check.fitted == pytest.approx(check.measured, abs=0.005)
    assert {c.far for c in fit.held_out} == {1e-5, 5e-6, 2e-6, 1e-6}
    for check in fit.held_out:  # a 1 % share, fitted, predicts what only every pair measures
        assert check.upper is not None and check.upper >= check.measured - 0.01
        assert check.covered is not None and check.covered >= 0.5
    shortfalls = [c.worst_shortfall for c in fit.held_out]
    assert fit.margin == pytest.approx(max(shortfalls), abs=1e-5) and fit.margin < 0.03
    # the table is the bootstrap upper bound plus that margin: above the estimate by at least it
    for point, used in zip(fit.estimate, fit.table):
        assert used.similarity >= point.similarity + fit.margin


def test_the_fit_recovers_a_generalised_pareto_tail():
    rng = np.random.default_rng(2)
    tail = ImpostorTail()
    body = rng.uniform(-0.3, 0.4, 2_000_000)
    above = 0.4 + stats.genpareto.rvs(-0.25, 0, 0.04, size=20_000, random_state=rng)
    tail.add(np.concatenate([body, above]))
    fit = fit_tail(tail, u_far=5e-3, boot=50)  # u above 0.4: the same shape, scale 0.04 + xi (u - 0.4)
    assert fit.threshold > 0.4 and fit.exceedances == pytest.approx(10_100, abs=10)
    assert fit.shape == pytest.approx(-0.25, abs=0.05)
    assert fit.scale == pytest.approx(0.04 - 0.25 * (fit.threshold - 0.4), rel=0.1)


def test_too_few_pairs_above_the_threshold_are_refused():
    tail = ImpostorTail()
    tail.add(np.random.default_rng(3).normal(0, 0.1, 50_000))
    with pytest.raises(ValueError, match="too few to fit a tail"):
        fit_tail(tail)
