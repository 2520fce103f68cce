"""Helpers shared by the losses: label checks and the unordered pairs of a batch."""

from __future__ import annotations

import torch
from torch import Tensor


def check_batch(embeddings: Tensor, labels: Tensor) -> None:
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {tuple(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must be [N={embeddings.shape[0]}], got shape {tuple(labels.shape)}")


def upper_pairs(mat: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Values of ``mat`` at every unordered pair ``i < j`` and whether the pair is positive."""
    n = labels.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=mat.device)
    return mat[i, j], labels[i] == labels[j]
