"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from training.metric.distances import CosineSimilarity
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer


class NTXentLoss(MetricLoss):
    """NT-Xent over two augmented views ``z1, z2`` ``[N, D]`` of the same N samples.

    The 2N embeddings are compared by cosine similarity divided by ``temperature``; for each of
    them the positive is the other view of the same sample and the 2N - 2 others are negatives:
    ``l_i = -log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t))``. One term per embedding (2N terms),
    mean by default. ``forward(z1, z2) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "two_views"

    def __init__(self, temperature: float = 0.1, reducer: Reducer | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.reducer = reducer if reducer is not None else MeanReducer()

    def forward(self, z1: Tensor, z2: Tensor) -> LossOutput:
        if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
            shapes = f"{tuple(z1.shape)}, {tuple(z2.shape)}"
            raise ValueError(f"need two views of equal shape [N>=2, D], got {shapes}")
        n = z1.shape[0]
        z = torch.cat([z1, z2], dim=0)
        logits = CosineSimilarity().pairwise(z) / self.temperature
        eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        idx = torch.arange(n, device=z.device)
        target = torch.cat([idx + n, idx])
        per_anchor = F.cross_entropy(logits, target, reduction="none")
        return summarize(per_anchor, self.reducer)
