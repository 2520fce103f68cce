"""Pairwise contrastive loss (Hadsell, Chopra and LeCun 2006)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from training.metric.distances import Distance, EuclideanDistance
from training.metric.losses._pairs import check_batch, upper_pairs
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer


class ContrastiveLoss(MetricLoss):
    """``y * D^2 + (1 - y) * max(0, m - D)^2`` over every unordered pair ``i < j`` of the batch.

    ``y = 1`` for pairs with the same label, ``D`` the distance (Euclidean by default; any
    distance with ``smaller_is_closer``). One term per pair, reduced by ``reducer`` (mean over
    all pairs by default). ``forward(embeddings [N, D], labels [N]) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "labelled"

    def __init__(
        self, margin: float = 1.0, distance: Distance | None = None, reducer: Reducer | None = None
    ) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()
        if not self.distance.smaller_is_closer:
            raise ValueError("the contrastive loss needs a distance (smaller_is_closer), not a similarity")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.reducer = reducer if reducer is not None else MeanReducer()

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        d, same = upper_pairs(self.distance.pairwise(embeddings), labels)
        per_pair = torch.where(same, d.square(), (self.margin - d).clamp_min(0.0).square())
        return summarize(per_pair, self.reducer)
