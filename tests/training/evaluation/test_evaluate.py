"""The verification protocol's figures against slow, obvious computations on small arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from training.evaluation.metrics import (
    accuracy_at,
    best_threshold,
    equal_error_rate,
    k_fold_accuracy,
    roc_auc,
    tar_at_far,
    verification_report,
)
from training.evaluation.pairs import lfw_key, list_identities, read_lfw_pairs, sample_pairs


def _synthetic(rng: np.random.Generator, n: int, gap: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.random(n) < 0.5
    scores = rng.normal(size=n) + np.where(labels, gap / 2, -gap / 2)
    return np.round(scores, 2), labels  # rounding makes ties


def _brute_accuracy_max(scores: np.ndarray, labels: np.ndarray) -> float:
    cands = list(np.unique(scores)) + [np.inf]
    return max(np.mean([(s >= t) == y for s, y in zip(scores, labels, strict=True)]) for t in cands)


def _brute_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    gen, imp = scores[labels], scores[~labels]
    total = sum(1.0 if g > i else 0.5 if g == i else 0.0 for g in gen for i in imp)
    return total / (len(gen) * len(imp))


def _brute_tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    gen, imp = scores[labels], scores[~labels]
    best = 0.0
    for t in [-np.inf, *np.unique(scores), np.inf]:
        if sum(1 for i in imp if i > t) <= far * len(imp):
            best = max(best, sum(1 for g in gen if g > t) / len(gen))
    return best


def _brute_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    gen, imp = scores[labels], scores[~labels]
    pts = []
    for t in [np.inf, *sorted(np.unique(scores), reverse=True)]:
        pts.append((sum(1 for i in imp if i >= t) / len(imp), sum(1 for g in gen if g < t) / len(gen)))
    for (f0, r0), (f1, r1) in zip(pts, pts[1:], strict=False):
        if f0 - r0 < 0 <= f1 - r1:
            w = (r0 - f0) / ((r0 - f0) - (r1 - f1))
            return f0 + w * (f1 - f0)
    raise AssertionError("no crossing")


def test_separable_scores_give_100_percent_in_every_fold() -> None:
    rng = np.random.default_rng(0)
    labels = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    scores = np.where(labels, rng.uniform(0.6, 1.0, labels.size), rng.uniform(-0.2, 0.4, labels.size))
    res = k_fold_accuracy(scores, labels, np.repeat(np.arange(10), 60))
    assert np.all(res.accuracies == 1.0)
    assert res.mean == 1.0 and res.std == 0.0
    assert np.all((res.thresholds > 0.4) & (res.thresholds < 0.6))
    assert roc_auc(scores, labels) == 1.0
    assert equal_error_rate(scores, labels)[0] == 0.0
    assert tar_at_far(scores, labels, 1e-3)[0] == 1.0


def test_threshold_is_chosen_on_the_other_folds() -> None:
    # fold 0 is separable at 5.5, but the other folds (separable at 0.5) decide its threshold
    folds = np.repeat(np.arange(4), 4)
    labels = np.tile([True, True, False, False], 4)
    scores = np.array([1.0, 0.9, 0.1, 0.0] * 4)
    scores[:4] = [6.0, 5.9, 5.1, 5.0]
    res = k_fold_accuracy(scores, labels, folds)
    assert res.accuracies[0] == 0.5  # both of fold 0's mismatched pairs are accepted
    assert np.all(res.accuracies[1:] == 1.0)
    for f in range(4):
        train = folds != f
        assert accuracy_at(scores[train], labels[train], res.thresholds[f]) == pytest.approx(
            _brute_accuracy_max(scores[train], labels[train])
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_metrics_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, labels = _synthetic(rng, 160, gap=1.5)
    t = best_threshold(scores, labels)
    assert accuracy_at(scores, labels, t) == pytest.approx(_brute_accuracy_max(scores, labels))
    assert roc_auc(scores, labels) == pytest.approx(_brute_auc(scores, labels))
    assert equal_error_rate(scores, labels)[0] == pytest.approx(_brute_eer(scores, labels))
    for far in (0.01, 0.05, 0.2):
        tar, thr = tar_at_far(scores, labels, far)
        assert tar == pytest.approx(_brute_tar_at_far(scores, labels, far))
        assert np.mean(scores[~labels] > thr) <= far


def test_gaussian_scores_match_analytic_auc_and_eer() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)]
    assert roc_auc(scores, labels) == pytest.approx(norm.cdf(2 / np.sqrt(2)), abs=2e-3)
    eer, thr = equal_error_rate(scores, labels)
    assert eer == pytest.approx(norm.cdf(-1.0), abs=3e-3)
    assert thr == pytest.approx(0.0, abs=0.02)
    tar, _ = tar_at_far(scores, labels, 1e-2)
    assert tar == pytest.approx(norm.sf(norm.isf(1e-2) - 2.0), abs=5e-3)


def test_report_is_json_ready() -> None:
    rng = np.random.default_rng(4)
    scores, labels = _synthetic(rng, 400, gap=3.0)
    rep = verification_report(scores, labels, np.arange(400) % 10).to_dict()
    assert set(rep["tar_at_far"]) == {"0.01", "0.001"}
    assert len(rep["fold_accuracies"]) == 10
    assert rep["genuine_pairs"] + rep["impostor_pairs"] == 400
    assert rep["accuracy_std"] == pytest.approx(np.std(rep["fold_accuracies"], ddof=1), abs=1e-5)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        roc_auc(np.ones(4), np.ones(4, bool))
    with pytest.raises(ValueError):
        tar_at_far(np.arange(4.0), np.array([1, 0, 1, 0], bool), 1.5)
    with pytest.raises(ValueError):
        k_fold_accuracy(np.arange(4.0), np.array([1, 0, 1, 0], bool), np.zeros(4))


def test_lfw_pairs_file_is_parsed(tmp_path: Path) -> None:
    text = "2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n"
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    ps = read_lfw_pairs(path)
    assert ps.n_folds == 2
    assert ps.labels.tolist() == [True, False, True, False]
    assert ps.folds.tolist() == [0, 0, 1, 1]
    assert ps.pairs[1].b == lfw_key("B", 3) == "B/B_0003.jpg"
    path.write_text("1100\nA\t1\t2\n")
    with pytest.raises(ValueError):
        read_lfw_pairs(path)


def test_sampled_pairs_are_reproducible_and_identity_disjoint(tmp_path: Path) -> None:
    ids = {f"p{i:02d}": [f"p{i:02d}/{j}.jpg" for j in range(1 + i % 4)] for i in range(60)}
    a = sample_pairs(ids, np.random.default_rng(5), per_fold=10, n_folds=4)
    b = sample_pairs(ids, np.random.default_rng(5), per_fold=10, n_folds=4)
    assert a == b
    fold_of: dict[str, int] = {}
    for p in a.pairs:
        assert p.a != p.b
        assert (p.a.split("/")[0] == p.b.split("/")[0]) == p.same
        for k in (p.a, p.b):
            assert fold_of.setdefault(k.split("/")[0], p.fold) == p.fold
    assert a.labels.sum() == (~a.labels).sum()
    for name in ("x", "y"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "1.jpg").write_bytes(b"")
    assert list_identities(tmp_path) == {"x": ["x/1.jpg"], "y": ["y/1.jpg"]}


LFW = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "lfw" / "pairs.txt"


@pytest.mark.lfw
@pytest.mark.skipif(not LFW.is_file(), reason="LFW pairs.txt absent (../shared/data/lfw)")
def test_official_view2_has_ten_folds_of_300_plus_300() -> None:
    ps = read_lfw_pairs(LFW)
    assert len(ps.pairs) == 6000 and ps.n_folds == 10
    for f in range(10):
        assert ps.labels[ps.folds == f].sum() == 300
