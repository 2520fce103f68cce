"""P x K sampler invariants."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from training.data.sampler import PKSampler

# 30 identities with 1..9 images each
LABELS = np.repeat(np.arange(30), np.arange(30) % 9 + 1)


def _epoch(sampler: PKSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("policy", ["replace", "skip"])
def test_every_batch_has_p_identities_times_k_images(policy: str) -> None:
    sampler = PKSampler(LABELS, p=5, k=4, seed=0, small_identities=policy)
    batches = _epoch(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        counts = Counter(LABELS[batch].tolist())
        assert len(counts) == 5 and set(counts.values()) == {4}


def test_identities_with_enough_images_draw_without_repetition() -> None:
    sampler = PKSampler(LABELS, p=5, k=4, seed=3)
    sizes = Counter(LABELS.tolist())
    for batch in _epoch(sampler):
        for ident in set(LABELS[batch].tolist()):
            picks = [i for i in batch if LABELS[i] == ident]
            if sizes[ident] >= 4:
                assert len(set(picks)) == 4
            else:  # fewer than K: every image once, the rest repeated
                assert set(picks) == set(np.flatnonzero(LABELS == ident).tolist())


def test_skip_policy_never_samples_small_identities() -> None:
    sampler = PKSampler(LABELS, p=5, k=4, seed=0, small_identities="skip")
    small = {i for i, n in Counter(LABELS.tolist()).items() if n < 4}
    used = {int(LABELS[i]) for b in _epoch(sampler) for i in b}
    assert used and not used & small


def test_singletons_are_excluded_by_min_images() -> None:
    sampler = PKSampler(LABELS, p=5, k=4, seed=0, min_images=2)
    singles = {i for i, n in Counter(LABELS.tolist()).items() if n < 2}
    assert not {int(LABELS[i]) for b in _epoch(sampler) for i in b} & singles


def test_same_seed_same_order_and_different_seed_or_epoch_differs() -> None:
    a = _epoch(PKSampler(LABELS, p=5, k=4, seed=7))
    b = _epoch(PKSampler(LABELS, p=5, k=4, seed=7))
    c = _epoch(PKSampler(LABELS, p=5, k=4, seed=8))
    d = _epoch(PKSampler(LABELS, p=5, k=4, seed=7), epoch=1)
    assert a == b
    assert a != c
    assert a != d


def test_ranks_get_disjoint_shares_of_the_single_process_sequence() -> None:
    ranks = [PKSampler(LABELS, p=3, k=4, seed=1, rank=r, world_size=3, batches_per_epoch=5) for r in range(3)]
    per_rank = [_epoch(s, epoch=2) for s in ranks]
    assert [len(b) for b in per_rank] == [5, 5, 5]
    for t in range(5):
        ids = [set(LABELS[per_rank[r][t]].tolist()) for r in range(3)]
        # every rank has its own P x K batch, and no identity is on two ranks in the same step
        assert all(len(i) == 3 for i in ids)
        assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    # together they are the batches of one process drawing world_size * P identities per batch
    single = _epoch(PKSampler(LABELS, p=9, k=4, seed=1, batches_per_epoch=5), epoch=2)
    assert [per_rank[0][t] + per_rank[1][t] + per_rank[2][t] for t in range(5)] == single


def test_distributed_epoch_covers_the_data_once_per_rank_share() -> None:
    one = PKSampler(LABELS, p=4, k=4, seed=0)
    two = [PKSampler(LABELS, p=4, k=4, seed=0, rank=r, world_size=2) for r in range(2)]
    assert len(two[0]) == len(two[1]) == len(one) // 2


def test_too_few_identities_is_an_error() -> None:
    with pytest.raises(ValueError, match="identities"):
        PKSampler(np.array([0, 0, 1, 1]), p=3, k=2)
    with pytest.raises(ValueError):
        PKSampler(LABELS, p=2, k=2, small_identities="drop")  # type: ignore[arg-type]
