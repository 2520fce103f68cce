"""Margin schedules: values over epochs, the difficulty scheduler's transitions, resume."""

from __future__ import annotations

import random

import pytest

from training.metric.margin import (
    MARGINS,
    ConstantMargin,
    DifficultyMarginScheduler,
    ExponentialMargin,
    LinearMargin,
    build_margin,
    margin_value,
)


def test_constant_margin_never_changes():
    m = ConstantMargin(0.3)
    assert [m.step_epoch(r) for r in (0.0, 1.0, 0.99)] == [0.3, 0.3, 0.3]
    assert m.epoch == 3


def test_linear_margin_ramps_then_holds():
    m = LinearMargin(start=0.1, end=0.5, epochs=4)
    values = [m.value] + [m.step_epoch() for _ in range(6)]
    assert values == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5])


def test_exponential_margin_grows_by_a_constant_factor_then_holds():
    m = ExponentialMargin(start=0.1, end=0.8, epochs=3)
    values = [m.value] + [m.step_epoch() for _ in range(5)]
    assert values == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.8, 0.8])
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))


@pytest.mark.parametrize("cls", [LinearMargin, ExponentialMargin])
def test_ramps_are_monotonic_and_reject_decreasing_configs(cls):
    m = cls(start=0.05, end=1.0, epochs=7)
    values = [m.value] + [m.step_epoch() for _ in range(10)]
    assert values == sorted(values) and values[0] == pytest.approx(0.05) and values[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cls(start=0.5, end=0.1, epochs=3)
    with pytest.raises(ValueError):
        cls(start=0.1, end=0.5, epochs=0)


def test_exponential_needs_a_positive_start():
    with pytest.raises(ValueError):
        ExponentialMargin(start=0.0, end=0.5, epochs=3)


def test_difficulty_scheduler_stays_below_threshold_and_grows_at_it():
    m = DifficultyMarginScheduler(initial=0.2, threshold=0.95, step=0.05)
    assert m.step_epoch(0.94) == pytest.approx(0.2)
    assert m.step_epoch(0.0) == pytest.approx(0.2)
    assert m.step_epoch(0.95) == pytest.approx(0.25)  # at the threshold: grows
    assert m.step_epoch(1.0) == pytest.approx(0.30)
    assert m.step_epoch(0.5) == pytest.approx(0.30)  # a hard epoch does not shrink it
    assert (m.epoch, m.increments) == (5, 2)


def test_difficulty_scheduler_defaults_are_the_authors():
    m = DifficultyMarginScheduler()
    assert (m.threshold, m.step, m.max_margin) == (0.95, 0.05, None)


def test_difficulty_scheduler_never_decreases_and_counts_exactly():
    rng = random.Random(0)
    ratios = [rng.choice([rng.random(), 0.95, 1.0, 0.949999]) for _ in range(200)]
    m = DifficultyMarginScheduler(initial=0.1, threshold=0.95, step=0.05)
    values = [m.step_epoch(r) for r in ratios]
    assert values == sorted(values)
    grows = sum(r >= 0.95 for r in ratios)
    assert m.value == 0.1 + 0.05 * grows  # exact: value is initial + step * increments, no drift


def test_difficulty_scheduler_stops_at_max_margin():
    m = DifficultyMarginScheduler(initial=0.2, step=0.15, max_margin=0.4)
    assert [m.step_epoch(1.0) for _ in range(4)] == pytest.approx([0.35, 0.4, 0.4, 0.4])
    assert m.increments == 2


@pytest.mark.parametrize("bad", [None, -0.1, 1.5])
def test_difficulty_scheduler_rejects_a_missing_or_impossible_share(bad):
    with pytest.raises(ValueError):
        DifficultyMarginScheduler().step_epoch(bad)


@pytest.mark.parametrize(
    "kwargs", [{"threshold": 1.2}, {"step": 0.0}, {"initial": -0.1}, {"initial": 0.5, "max_margin": 0.3}]
)
def test_difficulty_scheduler_rejects_bad_configs(kwargs):
    with pytest.raises(ValueError):
        DifficultyMarginScheduler(**kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DifficultyMarginScheduler(initial=0.2, threshold=0.9, step=0.05, max_margin=1.0),
        lambda: LinearMargin(0.1, 0.6, 12),
        lambda: ExponentialMargin(0.1, 0.6, 12),
        lambda: ConstantMargin(0.4),
    ],
)
def test_resume_from_state_dict_continues_like_an_uninterrupted_run(make):
    rng = random.Random(1)
    ratios = [rng.choice([0.5, 0.92, 0.97, 1.0]) for _ in range(20)]
    straight = make()
    expected = [straight.step_epoch(r) for r in ratios]

    first = make()
    got = [first.step_epoch(r) for r in ratios[:8]]
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert resumed.value == first.value and resumed.epoch == 8
    got += [resumed.step_epoch(r) for r in ratios[8:]]
    assert got == expected


def test_state_dict_is_plain_and_kind_checked():
    m = DifficultyMarginScheduler()
    m.step_epoch(1.0)
    state = m.state_dict()
    assert state == {
        "kind": "DifficultyMarginScheduler",
        "epoch": 1,
        "increments": 1,
        "value": pytest.approx(0.25),
    }
    with pytest.raises(ValueError, match="LinearMargin"):
        LinearMargin().load_state_dict(state)


def test_registry_and_margin_value():
    for name, cls in MARGINS.items():
        assert isinstance(build_margin(name), cls)
    with pytest.raises(ValueError, match="difficulty"):
        build_margin("cosine")
    assert margin_value(0.3) == 0.3
    assert margin_value(ConstantMargin(0.7)) == 0.7
