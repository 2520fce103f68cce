"""The loss of a run as configured (loss + miner + margin schedule), and its per-epoch statistics.

``Objective`` hands each loss its batch in the layout the loss declares (``input_layout``):
the two augmented views (NT-Xent), the views stacked ``[N, V, D]`` (SupCon), or the views
concatenated with their labels repeated (every other loss). ``BatchStats`` accumulates, without synchronising with the device, the
loss's term counts, the share of easy triplets over every valid triplet of the batch (the
quantity the margin scheduler reads) and genuine/impostor distance moments.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from training.config import RunConfig
from training.metric.distances import Distance, EuclideanDistance, build_distance
from training.metric.losses import LOSSES, LossOutput, MetricLoss, build_loss
from training.metric.losses.reducers import MeanReducer, NonZeroMeanReducer
from training.metric.margin import MarginSchedule, build_margin
from training.metric.miners import build_miner, triplet_difficulty

_REDUCERS = {"mean": MeanReducer, "nonzero_mean": NonZeroMeanReducer}


class Objective(nn.Module):
    def __init__(
        self, name: str, loss: MetricLoss, views: int, margin: MarginSchedule | None, easy_margin: float
    ) -> None:
        super().__init__()
        self.name, self.loss, self.views = name, loss, views
        self.schedule = margin
        self.easy_margin = easy_margin
        distance = getattr(loss, "distance", None)
        self.easy_distance: Distance = distance if name == "triplet" and distance else EuclideanDistance()

    @property
    def margin_value(self) -> float:
        """The triplet margin in use, or the reference margin of the easy share for other losses."""
        value = getattr(self.loss, "margin_value", None)
        return float(value) if value is not None else self.easy_margin

    def forward(self, views: list[Tensor], labels: Tensor) -> LossOutput:
        layout = self.loss.input_layout
        if layout == "two_views":
            return self.loss(views[0], views[1])
        if len(views) == 1:
            return self.loss(views[0], labels)
        if layout == "stacked_views":
            return self.loss(torch.stack(views, dim=1), labels)
        return self.loss(torch.cat(views), labels.repeat(len(views)))

    def step_epoch(self, easy_share: float) -> None:
        if self.schedule is not None:
            self.schedule.step_epoch(easy_share if not math.isnan(easy_share) else 0.0)

    def get_extra_state(self) -> dict[str, Any]:
        return {"margin": self.schedule.state_dict() if self.schedule is not None else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.schedule is not None and state.get("margin") is not None:
            self.schedule.load_state_dict(state["margin"])


def build_objective(cfg: RunConfig, num_classes: int, embedding_dim: int) -> Objective:
    name = cfg.loss.name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {sorted(LOSSES)}")
    kw: dict[str, Any] = dict(cfg.loss.kwargs)
    if cfg.loss.distance is not None:
        kw["distance"] = build_distance(cfg.loss.distance)
    if cfg.loss.reducer is not None:
        kw["reducer"] = _REDUCERS[cfg.loss.reducer]()
    if cfg.miner.name is not None:
        kw["miner"] = build_miner(cfg.miner.name, **cfg.miner.kwargs)
    schedule = None
    if cfg.margin.name is not None:
        schedule = build_margin(cfg.margin.name, **cfg.margin.kwargs)
        kw["margin"] = schedule
    takes = inspect.signature(LOSSES[name]).parameters
    if "num_classes" in takes:  # a classification-style loss holds a proxy per training identity
        kw.setdefault("num_classes", num_classes)
        kw.setdefault("embedding_dim", embedding_dim)
    try:
        loss = build_loss(name, **kw)
    except TypeError as exc:
        raise ValueError(f"bad arguments for loss {name!r}: {exc}") from exc
    views = 2 if LOSSES[name].input_layout == "two_views" else cfg.loss.views
    return Objective(name, loss, views, schedule, cfg.train.easy_margin)


class BatchStats:
    """Sums over an epoch, kept on the device: [loss, steps, terms, active, valid triplets, easy
    triplets, genuine n, genuine sum, genuine sum of squares, impostor n, impostor sum, sum of squares]."""

    SIZE = 12

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(self.SIZE, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, out: LossOutput, emb: Tensor, labels: Tensor, objective: Objective) -> None:
        emb = emb.detach().float()
        mat = objective.easy_distance.pairwise(emb)
        counts = triplet_difficulty(
            mat, labels, distance=objective.easy_distance, margin=objective.margin_value
        )
        n = labels.shape[0]
        # Euclidean distances of every pair i < j (a [N, N] matrix: gathering N^2/2 row differences
        # cost 100x more at N = 384)
        upper = torch.ones(n, n, dtype=torch.bool, device=emb.device).triu(diagonal=1)
        d_all = torch.cdist(emb.double(), emb.double())
        same_all = labels[:, None] == labels[None, :]
        gen, imp = d_all[upper & same_all], d_all[upper & ~same_all]
        row = torch.stack(
            [
                out.loss.detach().double(),
                torch.ones((), dtype=torch.float64, device=emb.device),
                out.n_terms.double(),
                out.n_active.double(),
                counts.n_valid.double(),
                counts.n_easy.double(),
                torch.tensor(float(gen.numel()), dtype=torch.float64, device=emb.device),
                gen.sum(),
                gen.square().sum(),
                torch.tensor(float(imp.numel()), dtype=torch.float64, device=emb.device),
                imp.sum(),
                imp.square().sum(),
            ]
        )
        self.sums += row

    def summary(self, sums: Tensor | None = None) -> dict[str, float]:
        s = (self.sums if sums is None else sums).tolist()

        def ratio(a: float, b: float) -> float:
            return a / b if b else math.nan

        def std(n: float, total: float, sq: float) -> float:
            return math.sqrt(max(0.0, sq / n - (total / n) ** 2)) if n else math.nan

        return {
            "loss": ratio(s[0], s[1]),
            "active_ratio": ratio(s[3], s[2]),
            "easy_share": ratio(s[5], s[4]),
            "genuine_dist_mean": ratio(s[7], s[6]),
            "genuine_dist_std": std(s[6], s[7], s[8]),
            "impostor_dist_mean": ratio(s[10], s[9]),
            "impostor_dist_std": std(s[9], s[10], s[11]),
        }
