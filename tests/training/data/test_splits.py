"""Identity-disjoint splits and validation pairs."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.splits import sample_pairs, split_by_identity

LABELS = np.repeat(np.arange(50), np.arange(50) % 5 + 1)


def test_split_is_identity_disjoint_and_complete() -> None:
    split = split_by_identity(LABELS, val_fraction=0.2, seed=0)
    train_ids, val_ids = set(LABELS[split.train].tolist()), set(LABELS[split.val].tolist())
    assert train_ids and val_ids and not train_ids & val_ids
    assert sorted(np.concatenate([split.train, split.val]).tolist()) == list(range(len(LABELS)))
    assert set(split.val_identities.tolist()) == val_ids
    # only identities with >= 2 images are held out (they give genuine pairs)
    assert all((LABELS == i).sum() >= 2 for i in val_ids)


def test_split_is_seeded() -> None:
    a = split_by_identity(LABELS, 0.2, seed=1)
    b = split_by_identity(LABELS, 0.2, seed=1)
    c = split_by_identity(LABELS, 0.2, seed=2)
    assert np.array_equal(a.val, b.val)
    assert not np.array_equal(a.val, c.val)


def test_zero_fraction_keeps_everything_for_training() -> None:
    split = split_by_identity(LABELS, 0.0, seed=0)
    assert len(split.val) == 0 and len(split.train) == len(LABELS)
    with pytest.raises(ValueError):
        split_by_identity(LABELS, 1.0, seed=0)


def test_pairs_are_labelled_correctly_and_reproducible() -> None:
    i, j, same = sample_pairs(LABELS, 100, seed=4)
    assert same.sum() == (~same).sum() == 100
    assert np.array_equal(LABELS[i] == LABELS[j], same)
    assert not np.any(i[same] == j[same])
    i2, j2, _ = sample_pairs(LABELS, 100, seed=4)
    assert np.array_equal(i, i2) and np.array_equal(j, j2)
