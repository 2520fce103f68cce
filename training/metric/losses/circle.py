"""Circle loss (Sun et al., CVPR 2020): pair-wise form and class-level (proxy) form.

For one anchor with within-class similarities ``s_p`` and between-class similarities ``s_n``:

    L = softplus(logsumexp_j(gamma * a_n^j * (s_n^j - D_n)) + logsumexp_i(-gamma * a_p^i * (s_p^i - D_p)))
      = log(1 + sum_j sum_i exp(gamma * (a_n^j (s_n^j - D_n) - a_p^i (s_p^i - D_p))))

with ``a_p = max(0, O_p - s_p)``, ``a_n = max(0, s_n - O_n)``, ``O_p = 1 + m``, ``O_n = -m``,
``D_p = 1 - m``, ``D_n = m``. As in the authors' code the weights ``a_p, a_n`` are treated as
constants (no gradient flows through them). Similarities are cosine similarities.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.metric.distances import CosineSimilarity
from training.metric.losses._pairs import check_batch
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer
from training.metric.miners import pair_masks

_NEG_INF = float("-inf")


def _check_params(m: float, gamma: float) -> None:
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"m must be in [0, 1], got {m}")
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")


def circle_per_anchor(sim: Tensor, pos: Tensor, neg: Tensor, m: float, gamma: float) -> Tensor:
    """Circle loss of each row of ``sim`` ``[A, K]``; ``pos``/``neg`` masks pick its pairs.

    Every row must have at least one positive and one negative entry.
    """
    alpha_p = (1.0 + m - sim.detach()).clamp_min(0.0)
    alpha_n = (sim.detach() + m).clamp_min(0.0)
    logit_p = (-gamma * alpha_p * (sim - (1.0 - m))).masked_fill(~pos, _NEG_INF)
    logit_n = (gamma * alpha_n * (sim - m)).masked_fill(~neg, _NEG_INF)
    return F.softplus(torch.logsumexp(logit_p, dim=1) + torch.logsumexp(logit_n, dim=1))


class CircleLoss(MetricLoss):
    """Pair-wise circle loss over a labelled batch; one term per anchor.

    Every sample with at least one positive and one negative in the batch is an anchor; its
    positives are the other samples with its label, its negatives all samples with another
    label. Terms are reduced by ``reducer`` (mean over anchors by default). Defaults
    ``m = 0.25, gamma = 256`` are the paper's face-recognition setting.
    ``forward(embeddings [N, D], labels [N]) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "labelled"

    def __init__(self, m: float = 0.25, gamma: float = 256.0, reducer: Reducer | None = None) -> None:
        super().__init__()
        _check_params(m, gamma)
        self.m, self.gamma = float(m), float(gamma)
        self.reducer = reducer if reducer is not None else MeanReducer()

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        pos, neg = pair_masks(labels)
        anchors = (pos.any(dim=1) & neg.any(dim=1)).nonzero(as_tuple=True)[0]
        sim = CosineSimilarity().pairwise(embeddings[anchors], embeddings)
        per_anchor = circle_per_anchor(sim, pos[anchors], neg[anchors], self.m, self.gamma)
        return summarize(per_anchor, self.reducer)


class ClassCircleLoss(MetricLoss):
    """Class-level circle loss with a learnable proxy (weight vector) per class.

    ``s_p`` is the cosine between a sample and its class's proxy (one positive per sample),
    ``s_n`` the cosines to every other class's proxy. One term per sample, mean by default.
    The proxies ``weight`` ``[num_classes, embedding_dim]`` are a parameter: give this module's
    parameters to the optimiser. ``forward(embeddings [N, D], labels [N] in [0, C)) -> LossOutput``.
    """

    input_layout: ClassVar[InputLayout] = "labelled"

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        m: float = 0.25,
        gamma: float = 256.0,
        reducer: Reducer | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        _check_params(m, gamma)
        self.num_classes, self.m, self.gamma = int(num_classes), float(m), float(gamma)
        self.reducer = reducer if reducer is not None else MeanReducer()
        init = torch.randn(num_classes, embedding_dim, generator=generator) / math.sqrt(embedding_dim)
        self.weight = nn.Parameter(init)

    def forward(self, embeddings: Tensor, labels: Tensor) -> LossOutput:
        check_batch(embeddings, labels)
        if embeddings.shape[1] != self.weight.shape[1]:
            raise ValueError(f"embeddings have dim {embeddings.shape[1]}, proxies {self.weight.shape[1]}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must be class indices in [0, {self.num_classes})")
        sim = CosineSimilarity().pairwise(embeddings, self.weight.to(embeddings.dtype))
        pos = F.one_hot(labels.long(), self.num_classes).bool()
        per_sample = circle_per_anchor(sim, pos, ~pos, self.m, self.gamma)
        return summarize(per_sample, self.reducer)
