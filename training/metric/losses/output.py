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

:class:`LossStatsMeter` sums the counts over an epoch (the ratios of an epoch are count-weighted,
not a mean of batch ratios); its ``counts()`` tensor can be all-reduced under DDP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from training.metric.losses.reducers import Reducer


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


class LossStatsMeter:
    """Accumulates loss values and term counts over many steps (e.g. one epoch)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sums: Tensor | None = None  # [loss_sum, n_steps, n_terms, n_active], float64

    def update(self, out: LossOutput) -> None:
        row = torch.stack(
            [
                out.loss.detach().to(torch.float64),
                torch.ones((), dtype=torch.float64, device=out.loss.device),
                out.n_terms.to(torch.float64),
                out.n_active.to(torch.float64),
            ]
        )
        self._sums = row if self._sums is None else self._sums + row

    def counts(self) -> Tensor:
        """``[loss_sum, n_steps, n_terms, n_active]`` (float64); sum it across processes for DDP."""
        return torch.zeros(4, dtype=torch.float64) if self._sums is None else self._sums

    def load_counts(self, counts: Tensor) -> None:
        """Replace the sums, e.g. by their all-reduced version."""
        self._sums = counts.to(torch.float64)

    @property
    def mean_loss(self) -> float:
        s = self.counts().tolist()
        return s[0] / s[1] if s[1] else math.nan

    @property
    def active_ratio(self) -> float:
        s = self.counts().tolist()
        return s[3] / s[2] if s[2] else math.nan

    @property
    def easy_ratio(self) -> float:
        return 1.0 - self.active_ratio
