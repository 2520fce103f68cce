"""Metric learning: distances, triplet miners, margin schedules and the losses (``losses/``).

Every component is built by registry name (``build_distance``, ``build_miner``, ``build_margin``,
``build_loss``); an unknown name raises ``ValueError`` listing the valid ones.
"""

from __future__ import annotations

from training.metric.distances import DISTANCES, Distance, build_distance
from training.metric.losses import LOSSES, LossOutput, MetricLoss, build_loss
from training.metric.margin import MARGINS, MarginSchedule, build_margin
from training.metric.miners import MINERS, TripletMiner, Triplets, build_miner, triplet_difficulty

__all__ = [
    "DISTANCES",
    "Distance",
    "LOSSES",
    "LossOutput",
    "MARGINS",
    "MINERS",
    "MarginSchedule",
    "MetricLoss",
    "TripletMiner",
    "Triplets",
    "build_distance",
    "build_loss",
    "build_margin",
    "build_miner",
    "triplet_difficulty",
]
