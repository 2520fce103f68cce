"""Metric-learning losses. Every loss is an ``nn.Module`` whose ``forward`` returns a
:class:`LossOutput` (scalar ``loss`` + term counts for logging); see :mod:`.output`.

``build_loss(name, **kwargs)`` instantiates one from :data:`LOSSES`.
"""

from __future__ import annotations

from typing import Any

from training.metric.losses.circle import CircleLoss, ClassCircleLoss
from training.metric.losses.contrastive import ContrastiveLoss
from training.metric.losses.cosine_contrastive import CosineContrastiveLoss
from training.metric.losses.ntxent import NTXentLoss
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, NonZeroMeanReducer, Reducer
from training.metric.losses.supcon import SupConLoss
from training.metric.losses.triplet import TripletMarginLoss

LOSSES: dict[str, type[MetricLoss]] = {
    "contrastive": ContrastiveLoss,
    "triplet": TripletMarginLoss,
    "circle": CircleLoss,
    "circle_class": ClassCircleLoss,
    "ntxent": NTXentLoss,
    "supcon": SupConLoss,
    "cosine_contrastive": CosineContrastiveLoss,
}


def build_loss(name: str, **kwargs: Any) -> MetricLoss:
    """Instantiate a loss by registry name; unknown names raise ``ValueError``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)


__all__ = [
    "LOSSES",
    "InputLayout",
    "CircleLoss",
    "ClassCircleLoss",
    "ContrastiveLoss",
    "CosineContrastiveLoss",
    "LossOutput",
    "MetricLoss",
    "MeanReducer",
    "NTXentLoss",
    "NonZeroMeanReducer",
    "Reducer",
    "SupConLoss",
    "TripletMarginLoss",
    "build_loss",
    "summarize",
]
