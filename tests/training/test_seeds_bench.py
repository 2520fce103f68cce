"""bench/seeds.py: an epoch is a full pass (the scheduler's unit), the geometry comes from the
configs, and the increasing-margin config reaches its end value at its last epoch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training.synthetic_faces import make_cache
from training.config import load_config
from training.metric.margin import build_margin

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import seeds  # noqa: E402


def _args(*argv: str):
    old = sys.argv
    sys.argv = ["seeds.py", *argv]
    try:
        return seeds.parse_args()
    finally:
        sys.argv = old


def test_partial_epochs_are_not_offered() -> None:
    with pytest.raises(SystemExit):
        _args("--batches-per-epoch", "10")


def test_geometry_is_read_from_the_config_and_an_epoch_is_a_full_pass(tmp_path: Path) -> None:
    cache = make_cache(tmp_path, n_ids=12, per_id=5)
    args = _args(
        "--epochs", "3", "--set", "sampler.p=4", "--set", "sampler.k=3", "--set", "data.val_fraction=0.25"
    )
    g = seeds.geometry(args, "triplet_scheduled", cache.root)
    assert (g["p"], g["k"], g["views"]) == (4, 3, 1)
    # 9 training identities x 5 images = 45 images; a pass is 45 // (4 * 3) = 3 steps
    assert g["steps_per_epoch"] == 45 // 12
    assert seeds.geometry(args, "ntxent", cache.root)["views"] == 2
    default = seeds.geometry(_args(), "contrastive", None)
    assert (default["p"], default["k"]) == (48, 2)  # base.toml's sampler, not a number in the script


def _trained_margins(cfg) -> list[float]:
    schedule = build_margin(cfg.margin.name, **cfg.margin.kwargs)
    values = []
    for _ in range(cfg.train.epochs):  # the loop trains an epoch at .value, then steps the schedule
        values.append(schedule.value)
        schedule.step_epoch(0.5)
    return values


def test_increasing_margin_config_reaches_its_end_value_at_the_last_epoch() -> None:
    cfg = load_config(REPO / "training/configs/triplet_increasing.toml", ["data.cache=x"])
    values = _trained_margins(cfg)
    assert values[0] == pytest.approx(cfg.margin.kwargs["start"])
    assert values[-1] == pytest.approx(cfg.margin.kwargs["end"])
    assert np.all(np.diff(values) > 0)
