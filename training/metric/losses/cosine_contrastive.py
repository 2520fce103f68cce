"""Cosine contrastive loss."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from training.metric.distances import CosineSimilarity
from training.metric.losses._pairs import check_batch, upper_pairs
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer


class CosineContrastiveLoss(MetricLoss):
    """``y * (1 - cos) + (1 - y) * max(0, cos - delta)^2`` over every unordered pair ``i < j``.

    ``y = 1`` for pairs with the same label. Negatives cost nothing once their cosine is at most
    ``delta``. Reduced by ``reducer`` (mean over all pairs by default).
    ``forward(embeddings [N, D], labels [N]) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "labelled"

    def __init__(self, delta: float = 0.5, reducer: Reducer | None = None) -> None:
        super().__init__()
        if not -1.0 <= delta <= 1.0:
            raise ValueError(f"delta must be in [-1, 1], got {delta}")
        self.delta = float(delta)
        self.reducer = reducer if reducer is not None else MeanReducer()

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        cos, same = upper_pairs(CosineSimilarity().pairwise(embeddings), labels)
        per_pair = torch.where(same, 1.0 - cos, (cos - self.delta).clamp_min(0.0).square())
        return summarize(per_pair, self.reducer)
