"""Calibration: the logistic fit, the impostor tail and the far table the service reads."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluation.calibration import FAR_GRID, ImpostorTail, fit_logistic, make_calibration


def test_logistic_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    a, b = 12.0, -5.0
    s = rng.uniform(-0.2, 1.0, 200_000)
    y = rng.random(s.size) < 1.0 / (1.0 + np.exp(-(a * s + b)))
    fa, fb = fit_logistic(s, y)
    assert fa == pytest.approx(a, rel=0.05)
    assert fb == pytest.approx(b, rel=0.05)


def test_logistic_fit_stays_finite_on_separable_data() -> None:
    s = np.r_[np.linspace(0.6, 1.0, 50), np.linspace(-0.3, 0.3, 50)]
    y = np.r_[np.ones(50), np.zeros(50)]
    a, b = fit_logistic(s, y)
    assert np.isfinite([a, b]).all() and a > 0
    assert 0.3 < -b / a < 0.6  # the 50% point lies in the gap
    with pytest.raises(ValueError):
        fit_logistic(s, np.ones(100))


def _brute_threshold(sims: np.ndarray, far: float, width: float) -> float:
    """Smallest grid edge t with at most far * n similarities >= t, by scanning the grid."""
    n = len(sims)
    for j in range(int(round(2 / width)) + 1):
        t = -1.0 + j * width
        if np.sum(sims >= t - 1e-12) <= far * n:
            return t
    return 1.0


def test_tail_threshold_matches_a_brute_force_scan() -> None:
    rng = np.random.default_rng(1)
    sims = np.clip(rng.normal(0.0, 0.3, 5000), -1, 1)
    tail = ImpostorTail(bin_width=1e-3)
    tail.add(sims)
    assert tail.total == 5000
    for far in (0.1, 0.01, 0.002):
        t = tail.threshold_at(far)
        assert t == pytest.approx(_brute_threshold(sims, far, 1e-3), abs=1e-9)
        assert np.sum(sims >= t) <= far * len(sims)
        assert np.sum(sims >= t - 1e-3) > far * len(sims)  # one bin lower is too loose


def test_all_cross_identity_pairs_are_counted_once() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(37, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = rng.integers(0, 9, 37).astype(str)
    tail = ImpostorTail(bin_width=1e-4)
    n = tail.add_within(emb, labels, block=5)
    expected = [float(emb[i] @ emb[j]) for i in range(37) for j in range(i + 1, 37) if labels[i] != labels[j]]
    assert n == len(expected)
    ref = ImpostorTail(bin_width=1e-4)
    ref.add(np.array(expected))
    assert np.array_equal(tail.counts, ref.counts)
    assert tail.add_across(emb[:10], emb[10:], block=3) == 10 * 27


def test_far_table_is_monotone_and_only_as_fine_as_the_data() -> None:
    rng = np.random.default_rng(3)
    tail = ImpostorTail()
    tail.add(np.tanh(rng.normal(0.0, 0.25, 200_000)))
    table = tail.far_table(FAR_GRID, min_tail=10)
    fars = [p.far for p in table]
    sims = [p.similarity for p in table]
    assert fars == sorted(fars, reverse=True)
    assert all(s1 <= s2 for s1, s2 in zip(sims, sims[1:], strict=False))
    assert min(fars) * 200_000 >= 10 and min(fars) == 5e-5  # 2e-5 * 2e5 = 4 pairs: not tabulated
    for f in (1e-2, 1e-3, 1e-4):
        assert f in fars


def test_calibration_is_consistent_with_its_table() -> None:
    rng = np.random.default_rng(4)
    imp = np.tanh(rng.normal(0.05, 0.12, 300_000))
    gen = np.tanh(rng.normal(0.75, 0.1, 3000))
    tail = ImpostorTail()
    tail.add(imp)
    cal = make_calibration(gen, imp[:3000], tail, data="synthetic", cross_source_pairs=7)
    assert cal.a > 0 and cal.impostor_pairs == 300_000 and cal.genuine_pairs == 3000
    assert cal.cross_source_pairs == 7  # a declared card field passes through
    for p in cal.far_table:
        assert cal.similarity_at_far(p.far) == pytest.approx(p.similarity)
        assert np.mean(imp >= p.similarity) <= p.far
    # interpolation between tabulated rates stays between their thresholds
    mid = cal.similarity_at_far(3e-4)
    assert cal.similarity_at_far(5e-4) <= mid <= cal.similarity_at_far(2e-4)
    assert cal.score(cal.similarity_at_far(1e-4)) > cal.score(cal.similarity_at_far(1e-2))


def test_impostor_sources_leave_out_the_excluded_identities(tmp_path) -> None:
    from training.evaluation.calibration import _source_images

    root = tmp_path / "celeba-aligned"
    for ident, n in (("11", 2), ("12", 1), ("13", 3)):
        (root / ident).mkdir(parents=True)
        for i in range(n):
            (root / ident / f"{ident}{i}.jpg").write_bytes(b"")
    _, keys, labels = _source_images("celeba", tmp_path)
    assert sorted(set(labels)) == ["11", "12", "13"] and len(keys) == 6
    _, keys, labels = _source_images("celeba", tmp_path, exclude={"11", "13"})
    assert labels == ["12"] and keys == ["12/120.jpg"]
