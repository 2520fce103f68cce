"""P x K batch sampler: each batch holds P distinct identities with K images each.

The epoch's sequence is a pure function of (labels, P, K, seed, epoch, world size): every
process computes the same sequence of global steps, each of ``world_size * P`` distinct
identities x K images, and rank r takes the r-th block of P identities of every step. Ranks
thus get disjoint shares (no identity is on two ranks in one step, so embeddings gathered
across ranks form one valid P x K batch), and together they see exactly the batches a single
process with ``world_size * P`` identities per batch would see. Call ``set_epoch`` before each
epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

SmallPolicy = Literal["replace", "skip"]


class PKSampler:
    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        p: int,
        k: int,
        seed: int = 0,
        *,
        rank: int = 0,
        world_size: int = 1,
        small_identities: SmallPolicy = "replace",
        min_images: int = 2,
        batches_per_epoch: int | None = None,
    ) -> None:
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if small_identities not in ("replace", "skip"):
            raise ValueError(f"small_identities must be 'replace' or 'skip', got {small_identities!r}")
        labels = np.asarray(labels)
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.small_identities = small_identities
        floor = max(min_images, k) if small_identities == "skip" else min_images
        ids, inverse = np.unique(labels, return_inverse=True)
        groups = [np.flatnonzero(inverse == i) for i in range(len(ids))]
        self.groups = [g for g in groups if len(g) >= floor]
        self.p_global = p * world_size
        if len(self.groups) < self.p_global:
            raise ValueError(
                f"{world_size} rank(s) x P={p} need at least {self.p_global} identities with >= {floor} "
                f"images; only {len(self.groups)} have"
            )
        n_images = sum(len(g) for g in self.groups)
        # every rank runs the same number of steps (collectives)
        self.steps = batches_per_epoch or max(1, n_images // (self.p_global * k))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def global_sequence(self) -> list[list[int]]:
        """The epoch's global batches (``world_size * P`` identities each), before the split."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n_ids = len(self.groups)
        pools: list[list[int]] = [[] for _ in range(n_ids)]
        order: list[int] = []
        batches: list[list[int]] = []
        for _ in range(self.steps):
            chosen: list[int] = []
            while len(chosen) < self.p_global:
                if not order:
                    order = rng.permutation(n_ids).tolist()
                ident = order.pop()
                if ident in chosen:  # only possible right after a reshuffle; defer it
                    order.insert(0, ident)
                    continue
                chosen.append(ident)
            batch: list[int] = []
            for ident in chosen:
                batch.extend(self._draw(ident, pools, rng))
            batches.append(batch)
        return batches

    def _draw(self, ident: int, pools: list[list[int]], rng: np.random.Generator) -> list[int]:
        group = self.groups[ident]
        if len(group) < self.k:  # only under "replace": all images once, the rest with replacement
            extra = rng.choice(group, size=self.k - len(group), replace=True)
            return rng.permutation(np.concatenate([group, extra])).tolist()
        pool = pools[ident]
        if len(pool) < self.k:  # refill without repeating what is left
            fresh = [int(i) for i in rng.permutation(group) if i not in pool]
            pool[:0] = fresh
        drawn = pool[-self.k :]
        del pool[-self.k :]
        return drawn

    def __iter__(self) -> Iterator[list[int]]:
        share = self.p * self.k
        for batch in self.global_sequence():
            yield batch[self.rank * share : (self.rank + 1) * share]
