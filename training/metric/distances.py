"""Distances between embeddings, computed as a pairwise matrix.

Each distance knows its orientation (``smaller_is_closer``): Euclidean and cosine distances are
small for close embeddings, cosine similarity is large. Losses and miners never branch on the
class; they call :meth:`Distance.dissimilarity`, which turns any matrix into one where smaller
means closer, and :meth:`Distance.violation`, the signed amount by which a pair that should be
closer is not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_embeddings(x: Tensor, y: Tensor | None) -> None:
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [N, D], got shape {tuple(x.shape)}")
    if y is not None and (y.ndim != 2 or y.shape[1] != x.shape[1]):
        raise ValueError(f"reference embeddings must be [M, {x.shape[1]}], got shape {tuple(y.shape)}")


class Distance(ABC):
    """A pairwise distance or similarity over rows of embedding matrices."""

    smaller_is_closer: ClassVar[bool]

    @abstractmethod
    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Matrix ``[N, M]`` between rows of ``x`` ``[N, D]`` and ``y`` ``[M, D]`` (``y = x`` if None)."""

    def dissimilarity(self, values: Tensor) -> Tensor:
        """The same values oriented so that smaller means closer (identity for distances)."""
        return values if self.smaller_is_closer else -values

    def violation(self, closer: Tensor, farther: Tensor) -> Tensor:
        """``d(closer) - d(farther)`` in dissimilarity units: > 0 when the order is wrong.

        For a triplet, ``violation(d(a,p), d(a,n)) + margin`` is the hinge argument of the
        triplet loss whatever the orientation of the distance.
        """
        return self.dissimilarity(closer) - self.dissimilarity(farther)


@dataclass(frozen=True)
class EuclideanDistance(Distance):
    """L2 distance ``||x - y||`` (or its square with ``squared=True``).

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product). The diagonal of ``pairwise(x)`` is
    0 (up to ``sqrt(tiny)``, ~1e-19 in float32) and the square root has a zero gradient there.
    ``normalize=True`` L2-normalises the rows first.
    """

    squared: bool = False
    normalize: bool = False
    smaller_is_closer: ClassVar[bool] = True

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        _check_embeddings(x, y)
        if self.normalize:
            x = F.normalize(x, dim=1)
            y = None if y is None else F.normalize(y, dim=1)
        if y is None:
            gram = x @ x.t()
            sq = gram.diagonal()
            # (a + a) - 2a is exactly 0 in floating point: the diagonal is exactly zero
            d2 = (sq[:, None] + sq[None, :]) - 2.0 * gram
        else:
            d2 = torch.addmm((x * x).sum(dim=1)[:, None] + (y * y).sum(dim=1)[None, :], x, y.t(), alpha=-2.0)
        if self.squared:
            return d2.clamp_min(0.0)
        # clamping at the smallest normal float keeps sqrt's gradient finite (and zero there);
        # exact zeros come out as sqrt(tiny), about 1e-19 in float32
        return d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt()


@dataclass(frozen=True)
class CosineSimilarity(Distance):
    """Cosine similarity ``x.y / (|x| |y|)``; larger means closer."""

    smaller_is_closer: ClassVar[bool] = False

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        _check_embeddings(x, y)
        xn = F.normalize(x, dim=1)
        yn = xn if y is None else F.normalize(y, dim=1)
        return xn @ yn.t()


@dataclass(frozen=True)
class CosineDistance(Distance):
    """Cosine distance ``1 - cos(x, y)`` in [0, 2]; smaller means closer."""

    smaller_is_closer: ClassVar[bool] = True

    def pairwise(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return 1.0 - CosineSimilarity().pairwise(x, y)


DISTANCES: dict[str, type[Distance]] = {
    "euclidean": EuclideanDistance,
    "cosine": CosineDistance,
    "cosine_similarity": CosineSimilarity,
}


def build_distance(name: str, **kwargs: Any) -> Distance:
    """Instantiate a distance by registry name; unknown names raise ``ValueError``."""
    if name not in DISTANCES:
        raise ValueError(f"unknown distance {name!r}; valid names: {sorted(DISTANCES)}")
    return DISTANCES[name](**kwargs)
