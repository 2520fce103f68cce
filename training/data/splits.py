"""Identity-disjoint train/validation splits and reproducible validation pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # sample indices
    val: np.ndarray
    train_identities: np.ndarray
    val_identities: np.ndarray


def split_by_identity(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int, min_val_images: int = 2
) -> Split:
    """Split samples so that no identity is in both parts.

    ``val_fraction`` of the identities having at least ``min_val_images`` images (so that the
    validation part has genuine pairs) go to validation, chosen by a generator seeded with
    ``seed``; every other identity trains.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    labels = np.asarray(labels)
    ids, counts = np.unique(labels, return_counts=True)
    eligible = ids[counts >= min_val_images]
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * len(eligible)))
    val_ids = np.sort(rng.permutation(eligible)[:n_val]) if n_val else np.empty(0, dtype=ids.dtype)
    is_val = np.isin(labels, val_ids)
    return Split(
        train=np.flatnonzero(~is_val),
        val=np.flatnonzero(is_val),
        train_identities=np.setdiff1d(ids, val_ids),
        val_identities=val_ids,
    )


def sample_pairs(
    labels: Sequence[int] | np.ndarray, n_pairs: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``n_pairs`` genuine and as many impostor pairs among ``labels``, reproducibly.

    Returns (i, j, same) index arrays into ``labels``. Genuine pairs are drawn without
    repetition from all same-identity pairs; impostor pairs from random cross-identity draws.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(labels == u) for u in np.unique(labels)]
    genuine = [(g[a], g[b]) for g in groups for a in range(len(g)) for b in range(a + 1, len(g))]
    if not genuine or len(groups) < 2:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, np.empty(0, dtype=bool)
    take = rng.permutation(len(genuine))[:n_pairs]
    gi = np.array([genuine[t][0] for t in take], dtype=np.int64)
    gj = np.array([genuine[t][1] for t in take], dtype=np.int64)
    n_imp = len(take)
    ii = rng.integers(0, len(labels), size=4 * n_imp)
    jj = rng.integers(0, len(labels), size=4 * n_imp)
    keep = labels[ii] != labels[jj]
    ii, jj = ii[keep][:n_imp], jj[keep][:n_imp]
    i = np.concatenate([gi, ii])
    j = np.concatenate([gj, jj])
    same = np.concatenate([np.ones(len(gi), dtype=bool), np.zeros(len(ii), dtype=bool)])
    return i, j, same
