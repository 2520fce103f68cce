"""Reducers turn a vector of per-term losses into the scalar that is back-propagated.

Both keep the autograd graph when there are no terms (the result is then an exact 0 that still
depends on the embeddings, so every parameter receives a (zero) gradient, as DDP requires).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import Tensor


class Reducer(ABC):
    @abstractmethod
    def __call__(self, per_term: Tensor) -> Tensor:
        """Scalar from per-term losses ``[T]`` (all >= 0)."""


@dataclass(frozen=True)
class MeanReducer(Reducer):
    """Mean over all terms (0 when there are none)."""

    def __call__(self, per_term: Tensor) -> Tensor:
        return per_term.sum() / max(per_term.numel(), 1)


@dataclass(frozen=True)
class NonZeroMeanReducer(Reducer):
    """Mean over the terms with a non-zero loss (Hermans et al.'s "batch all != 0"); 0 if none."""

    def __call__(self, per_term: Tensor) -> Tensor:
        return per_term.sum() / (per_term.detach() > 0).sum().clamp_min(1)
