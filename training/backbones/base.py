"""What every embedding backbone promises, and the alignment template our own backbones use.

Contract: ``forward`` takes float32 NCHW RGB in raw 0..255 pixel values, normalises inside,
and returns L2-normalised embeddings ``[N, embedding_dim]``. Each backbone also exposes
``input_size`` (width, height) and ``alignment_template`` (5 points in crop pixels: left eye,
right eye, nose tip, left and right mouth corner, left/right as seen in the image), which the
data preparation and the model card use, so that training and serving align faces the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# The standard ArcFace / insightface 5-point template for 112x112 crops.
ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


def arcface_template(size: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    """The ArcFace template scaled from 112x112 to ``size`` = (width, height)."""
    sx, sy = size[0] / 112.0, size[1] / 112.0
    return tuple((x * sx, y * sy) for x, y in ARCFACE_TEMPLATE_112)


class Backbone(nn.Module):
    """Base class: subclasses implement ``features`` (normalised input -> unnormalised embedding)."""

    input_size: tuple[int, int]
    alignment_template: tuple[tuple[float, float], ...]
    embedding_dim: int
    # (x - mean) / std applied inside forward, so callers feed raw 0..255 pixels.
    pixel_mean: float = 127.5
    pixel_std: float = 128.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        return F.normalize(self.features(x), p=2.0, dim=1, eps=1e-12)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
