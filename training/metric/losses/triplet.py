"""Triplet margin loss (Schroff et al., FaceNet 2015) with a pluggable miner and margin."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from training.metric.distances import Distance, EuclideanDistance
from training.metric.losses._pairs import check_batch
from training.metric.losses.output import InputLayout, LossOutput, MetricLoss, summarize
from training.metric.losses.reducers import MeanReducer, Reducer
from training.metric.margin import MarginLike, MarginSchedule, margin_value
from training.metric.miners import BatchAllMiner, TripletMiner, Triplets


class TripletMarginLoss(MetricLoss):
    """``max(0, d(a,p) - d(a,n) + margin)`` per triplet, reduced by ``reducer`` (mean by default).

    - ``margin``: a float or a :class:`training.metric.margin.MarginSchedule`, read at every call, so a
      scheduler stepped by the training loop changes the loss (and the semi-hard window) at once.
    - ``distance``: Euclidean by default; cosine distance or cosine similarity work the same way
      (for a similarity the hinge is ``s(a,n) - s(a,p) + margin``).
    - ``miner``: picks the triplets from the batch (batch-all by default). ``forward`` may be given
      an explicit ``triplets`` instead, e.g. from another miner; the miner is then not called.

    ``forward(embeddings [N, D], labels [N], triplets=None) -> LossOutput`` with one term per
    triplet: ``easy_ratio`` is the share of the given triplets with zero loss. For the share over
    every valid triplet of the batch, whatever the miner, use :func:`training.metric.miners.triplet_difficulty`.
    """

    input_layout: ClassVar[InputLayout] = "labelled"

    def __init__(
        self,
        margin: MarginLike = 0.2,
        distance: Distance | None = None,
        miner: TripletMiner | None = None,
        reducer: Reducer | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(margin, MarginSchedule) and margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin
        self.distance = distance if distance is not None else EuclideanDistance()
        self.miner = miner if miner is not None else BatchAllMiner()
        self.reducer = reducer if reducer is not None else MeanReducer()

    @property
    def margin_value(self) -> float:
        return margin_value(self.margin)

    def forward(self, embeddings: Tensor, labels: Tensor, triplets: Triplets | None = None) -> LossOutput:
        check_batch(embeddings, labels)
        alpha = self.margin_value
        mat = self.distance.pairwise(embeddings)
        if triplets is None:
            triplets = self.miner.mine(mat.detach(), labels, distance=self.distance, margin=alpha)
        a, p, n = triplets
        if not a.shape == p.shape == n.shape or a.ndim != 1:
            raise ValueError("triplets must be three 1-D index tensors of equal length")
        # gathering from the flattened matrix back-propagates with index_add (much faster than mat[a, p])
        flat, width = mat.reshape(-1), mat.shape[1]
        d_ap, d_an = flat.index_select(0, a * width + p), flat.index_select(0, a * width + n)
        per_triplet = (self.distance.violation(d_ap, d_an) + alpha).clamp_min(0.0)
        return summarize(per_triplet, self.reducer)
