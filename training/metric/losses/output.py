"""What every loss returns: the scalar loss plus counts for logging.

All losses in :mod:`training.metric.losses` return a :class:`LossOutput`. ``loss`` is the reduced scalar
to back-propagate. ``n_terms`` is how many elementary terms the loss considered (pairs for the
pair losses, triplets for the triplet loss, anchors for circle / NT-Xent / SupCon) and
``n_active`` how many of those had a loss > 0. Both are 0-dim int64 tensors on the loss's
device, so building the output never synchronises with an accelerator; the ratio properties
do (call them when logging). ``easy_ratio`` is the share of terms with exactly zero loss
(``1 - active_ratio``); for the triplet loss that is the share of easy triplets among the ones
it was given. Smooth losses (circle, NT-Xent, SupCon) are practically never exactly zero, so
their active ratio is ~1.

Every loss class also declares its ``input_layout`` (:data:`InputLayout`), which tells the
training objective how to hand it a batch of several augmented views:

* ``"labelled"``: ``loss(embeddings [N*V, D], labels [N*V])``, the views concatenated;
* ``"stacked_views"``: ``loss(features [N, V, D], labels [N])`` (SupCon);
* ``"two_views"``: ``loss(z1 [N, D], z2 [N, D])``, the two views of each image (NT-Xent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from training.metric.losses.reducers import Reducer

InputLayout = Literal["labelled", "stacked_views", "two_views"]


class MetricLoss(nn.Module):
    """Base of every loss: an ``nn.Module`` returning :class:`LossOutput`, with its input layout."""

    input_layout: ClassVar[InputLayout] = "labelled"


@dataclass(frozen=True)
class LossOutput:
    loss: Tensor
    n_terms: Tensor
    n_active: Tensor

    @property
    def active_ratio(self) -> float:
        """Share of terms with non-zero loss (NaN when there were no terms)."""
        n = int(self.n_terms)
        return int(self.n_active) / n if n else math.nan

    @property
    def easy_ratio(self) -> float:
        """Share of terms with zero loss (NaN when there were no terms)."""
        return 1.0 - self.active_ratio


def summarize(per_term: Tensor, reducer: Reducer) -> LossOutput:
    """Reduce per-term losses ``[T]`` and count the active ones."""
    n_terms = torch.full((), per_term.numel(), dtype=torch.long, device=per_term.device)
    return LossOutput(reducer(per_term), n_terms, (per_term.detach() > 0).sum())
