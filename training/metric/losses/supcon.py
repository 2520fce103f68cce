"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), the L_out variant."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from training.metric.distances import CosineSimilarity
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer
from training.metric.miners import pair_masks


class SupConLoss(MetricLoss):
    """SupCon: ``l_i = -1/|P(i)| sum_{p in P(i)} log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t))``.

    ``s`` is cosine similarity, ``t`` the temperature, ``P(i)`` the other samples with the label
    of ``i``. Input either

    - ``features [N, D]`` with ``labels [N]`` (single view), or
    - ``features [N, V, D]`` (V views of N samples) with optional ``labels [N]``; without labels
      each sample is its own class, so the views of one sample are its only positives (with
      V = 2 this is NT-Xent).

    Anchors without any positive are skipped. One term per anchor, mean by default. Unlike the
    authors' code there is no extra ``t / base_temperature`` factor (it only rescales the loss).
    ``forward(features, labels=None) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "stacked_views"

    def __init__(self, temperature: float = 0.1, reducer: Reducer | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.reducer = reducer if reducer is not None else MeanReducer()

    def forward(self, features: Tensor, labels: Tensor | None = None) -> LossOutput:
        if features.ndim == 3:
            n, views = features.shape[:2]
            base = labels if labels is not None else torch.arange(n, device=features.device)
            if base.ndim != 1 or base.shape[0] != n:
                raise ValueError(f"labels must be [N={n}], got shape {tuple(base.shape)}")
            z = features.transpose(0, 1).reshape(n * views, features.shape[2])  # view-major
            labels = base.repeat(views)
        elif features.ndim == 2:
            if labels is None:
                raise ValueError("single-view features [N, D] need labels")
            if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
                raise ValueError(f"labels must be [N={features.shape[0]}], got shape {tuple(labels.shape)}")
            z = features
        else:
            raise ValueError(f"features must be [N, D] or [N, V, D], got shape {tuple(features.shape)}")
        pos, _ = pair_masks(labels)
        anchors = pos.any(dim=1).nonzero(as_tuple=True)[0]
        pos = pos[anchors]
        logits = CosineSimilarity().pairwise(z[anchors], z) / self.temperature
        self_mask = torch.zeros_like(pos)
        self_mask[torch.arange(anchors.numel(), device=z.device), anchors] = True
        log_denominator = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
        log_prob = (logits - log_denominator).masked_fill(~pos, 0.0)
        per_anchor = -log_prob.sum(dim=1) / pos.sum(dim=1)
        return summarize(per_anchor, self.reducer)
