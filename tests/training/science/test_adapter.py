"""Experiment A's runs are paired: for one seed every scheme starts from the same adapter, draws
the same batches and the same feature noise; only the loss differs. The scheduler moves."""

from __future__ import annotations

import numpy as np
import pytest

from training.science.adapter import AdapterBudget, scheme_config, train_adapter


def _data(seed: int = 0, spread: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(60), 3)
    x = rng.normal(size=(60, 16))[labels] + spread * rng.normal(size=(180, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


TINY = {"p": 12, "k": 2, "hidden": 32, "epochs": 2}


def test_same_seed_same_start_batches_and_noise_across_schemes() -> None:
    x, y = _data()
    budget = AdapterBudget(**TINY, lr=1e-30)  # no weight moves: epoch statistics show the inputs alone
    first = {}
    for scheme in ("contrastive", "triplet_constant", "circle", "supcon", "cosine_contrastive"):
        _, rows, _ = train_adapter(scheme, 7, x, y, budget)
        first[scheme] = [
            r[k] for r in rows for k in ("genuine_dist_mean", "impostor_dist_mean", "intra_class_var")
        ]
    values = list(first.values())
    assert all(v == pytest.approx(values[0], rel=1e-6) for v in values[1:])
    _, other, _ = train_adapter("contrastive", 8, x, y, budget)
    assert other[0]["genuine_dist_mean"] != pytest.approx(values[0][0], rel=1e-6)


def test_scheduled_margin_moves_and_the_ramp_reaches_its_end() -> None:
    x, y = _data(spread=0.2)  # well separated: nearly every triplet is easy at a small margin
    budget = AdapterBudget(**{**TINY, "epochs": 4}, margin_start=0.05, margin_end=0.3)
    _, rows, _ = train_adapter("triplet_scheduled", 0, x, y, budget)
    assert rows[0]["margin"] == 0.05 and rows[0]["easy_share"] >= 0.95
    assert [r["margin"] for r in rows] == pytest.approx([0.05, 0.10, 0.15, 0.20])
    _, ramp, _ = train_adapter("triplet_increasing", 0, x, y, budget)
    assert ramp[0]["margin"] == pytest.approx(0.05) and ramp[-1]["margin"] == pytest.approx(0.3)
    cfg = scheme_config("triplet_constant", budget, 0)
    assert cfg.margin.kwargs == {"value": 0.05}
