"""TAR at FAR over every cross-identity pair: the blockwise top-k equals the brute force."""

from __future__ import annotations

import numpy as np
import pytest

from training.science.evaluate import all_pairs_tar


def _brute(emb: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float, int, int]:
    n = len(labels)
    gen, imp = [], []
    for i in range(n):
        for j in range(i + 1, n):
            (gen if labels[i] == labels[j] else imp).append(float(emb[i] @ emb[j]))
    imp_sorted = np.sort(imp)[::-1]
    thr = imp_sorted[int(np.floor(far * len(imp) + 1e-9))]
    return float(np.mean(np.array(gen) > thr)), float(thr), len(gen), len(imp)


@pytest.mark.parametrize("far", [1e-3, 1e-2, 0.1])
def test_all_pairs_tar_equals_brute_force(far: float) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 60, 400)
    centres = rng.normal(size=(60, 16))
    emb = centres[labels] + 0.9 * rng.normal(size=(400, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    got = all_pairs_tar(emb, labels, far, block=37)
    tar, thr, n_gen, n_imp = _brute(emb.astype(np.float64), labels, far)
    assert (got["genuine_pairs"], got["impostor_pairs"]) == (n_gen, n_imp)
    assert n_gen + n_imp == 400 * 399 // 2
    assert got["threshold"] == pytest.approx(thr, abs=1e-6)
    assert got["tar"] == pytest.approx(tar, abs=1.5 / n_gen)
    # accepting above the threshold lets through at most far of the impostors
    assert np.floor(far * n_imp) / n_imp <= far
