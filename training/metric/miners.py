"""Triplet miners: which (anchor, positive, negative) triplets of a batch a triplet loss sees.

A miner works on a precomputed pairwise matrix (``distance.pairwise(embeddings)``, detached) so
that the loss computes it once and hands it over. The distance object is passed for its
orientation only; every rule below is written with ``d`` = its dissimilarity (smaller = closer;
``-s`` for a similarity). A valid triplet has ``label[a] == label[p]``, ``a != p`` and
``label[n] != label[a]``. Miners return :class:`Triplets`, three int64 index tensors.

``triplet_difficulty`` counts easy / semi-hard / hard triplets among all valid triplets of a batch,
whatever the miner (with semi-hard mining every mined triplet has non-zero loss by construction,
so a margin scheduler should be fed this batch-wide count instead).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from training.metric.distances import Distance


class Triplets(NamedTuple):
    anchor: Tensor
    positive: Tensor
    negative: Tensor

    @property
    def n_triplets(self) -> int:
        return int(self.anchor.numel())


def _check(mat: Tensor, labels: Tensor) -> None:
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(f"expected a square [N, N] matrix, got shape {tuple(mat.shape)}")
    if labels.ndim != 1 or labels.shape[0] != mat.shape[0]:
        raise ValueError(f"labels must be [N={mat.shape[0]}], got shape {tuple(labels.shape)}")


def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean ``[N, N]`` masks of positive pairs (same label, ``i != j``) and negative pairs."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _empty(device: torch.device) -> Triplets:
    e = torch.empty(0, dtype=torch.long, device=device)
    return Triplets(e, e.clone(), e.clone())


class TripletMiner(ABC):
    """Selects triplets from a pairwise matrix."""

    @abstractmethod
    def mine(self, mat: Tensor, labels: Tensor, *, distance: Distance, margin: float) -> Triplets:
        """Triplets from ``mat`` ``[N, N]`` (values of ``distance``) and ``labels`` ``[N]``.

        ``margin`` is the loss's current margin (used by margin-dependent miners only).
        """


@dataclass(frozen=True)
class BatchAllMiner(TripletMiner):
    """Every valid triplet of the batch, ordered by (anchor, positive, negative)."""

    def mine(self, mat: Tensor, labels: Tensor, *, distance: Distance, margin: float) -> Triplets:
        _check(mat, labels)
        pos, neg = pair_masks(labels)
        a, p = pos.nonzero(as_tuple=True)
        negs = neg[a]  # [pairs, N]: the negatives of each positive pair's anchor
        per_pair = negs.sum(dim=1)
        n = negs.nonzero(as_tuple=True)[1]
        return Triplets(a.repeat_interleave(per_pair), p.repeat_interleave(per_pair), n)


@dataclass(frozen=True)
class BatchHardMiner(TripletMiner):
    """Hermans et al. (2017) batch-hard: one triplet per anchor.

    For each anchor with at least one positive and one negative: the positive with the largest
    ``d(a, p)`` and the negative with the smallest ``d(a, n)``. Ties go to one of the tied
    indices (unspecified which). Anchors without a positive or a negative give no triplet.
    """

    def mine(self, mat: Tensor, labels: Tensor, *, distance: Distance, margin: float) -> Triplets:
        _check(mat, labels)
        d = distance.dissimilarity(mat.detach())
        pos, neg = pair_masks(labels)
        p = d.masked_fill(~pos, float("-inf")).argmax(dim=1)
        n = d.masked_fill(~neg, float("inf")).argmin(dim=1)
        keep = (pos.any(dim=1) & neg.any(dim=1)).nonzero(as_tuple=True)[0]
        return Triplets(keep, p[keep], n[keep])


@dataclass(frozen=True)
class SemiHardMiner(TripletMiner):
    """FaceNet (Schroff et al. 2015) semi-hard negatives, one triplet per positive pair.

    A negative ``n`` is semi-hard for the positive pair ``(a, p)`` when
    ``d(a, p) < d(a, n) < d(a, p) + margin`` (both strict): farther than the positive, yet inside
    the margin, so its loss lies in ``(0, margin)``. For every positive pair ``(a, p)`` (each
    ordered pair, ``a != p``) that has at least one semi-hard negative, the triplet uses the
    hardest one, the semi-hard negative with the smallest ``d(a, n)``. Positive pairs without a
    semi-hard negative are dropped (no fallback to hard or easy negatives).
    """

    def mine(self, mat: Tensor, labels: Tensor, *, distance: Distance, margin: float) -> Triplets:
        _check(mat, labels)
        d = distance.dissimilarity(mat.detach())
        pos, neg = pair_masks(labels)
        a, p = pos.nonzero(as_tuple=True)
        if a.numel() == 0:
            return _empty(mat.device)
        d_ap = d[a, p][:, None]
        d_an = d[a]
        semi = neg[a] & (d_an > d_ap) & (d_an < d_ap + margin)
        n = d_an.masked_fill(~semi, float("inf")).argmin(dim=1)
        keep = semi.any(dim=1).nonzero(as_tuple=True)[0]
        return Triplets(a[keep], p[keep], n[keep])


class TripletCounts(NamedTuple):
    """Counts over all valid triplets of a batch (0-dim int64 tensors; no device sync)."""

    n_valid: Tensor
    n_easy: Tensor  # d(a,n) >= d(a,p) + margin: zero loss
    n_semihard: Tensor  # d(a,p) < d(a,n) < d(a,p) + margin
    n_hard: Tensor  # d(a,n) <= d(a,p)


@torch.no_grad()
def triplet_difficulty(mat: Tensor, labels: Tensor, *, distance: Distance, margin: float) -> TripletCounts:
    """Classify every valid triplet of the batch as easy, semi-hard or hard for ``margin``.

    Easy means zero triplet loss: ``d(a,p) - d(a,n) + margin <= 0``.
    """
    _check(mat, labels)
    d = distance.dissimilarity(mat.detach())
    pos, neg = pair_masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    d_ap = d[a, p][:, None]
    d_an = d[a]
    negs = neg[a]
    easy = negs & (d_ap - d_an + margin <= 0)
    hard = negs & (d_an <= d_ap)
    n_valid = negs.sum()
    n_easy, n_hard = easy.sum(), hard.sum()
    return TripletCounts(n_valid, n_easy, n_valid - n_easy - n_hard, n_hard)


MINERS: dict[str, type[TripletMiner]] = {
    "batch_all": BatchAllMiner,
    "batch_hard": BatchHardMiner,
    "semi_hard": SemiHardMiner,
}


def build_miner(name: str, **kwargs: Any) -> TripletMiner:
    """Instantiate a miner by registry name; unknown names raise ``ValueError``."""
    if name not in MINERS:
        raise ValueError(f"unknown miner {name!r}; valid names: {sorted(MINERS)}")
    return MINERS[name](**kwargs)
