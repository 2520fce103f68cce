"""Batch augmentation on tensors: horizontal flip, colour jitter, small shifts and scale.

Works on a whole batch at once (float32 NCHW, raw 0..255 values, any device), drawing every
random parameter from the ``torch.Generator`` passed in (a CPU generator; parameters are moved
to the batch's device), so a run is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_GRAY = (0.299, 0.587, 0.114)


def to_float_nchw(crops: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float32 [N, 3, H, W] in 0..255."""
    return crops.permute(0, 3, 1, 2).float().contiguous()


@dataclass(frozen=True)
class Augment:
    flip: float = 0.5  # probability of a horizontal flip
    brightness: float = 0.2  # factor drawn in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    shift: float = 0.04  # largest translation, as a fraction of the side
    scale: float = 0.05  # zoom factor drawn in [1 - s, 1 + s]

    @property
    def enabled(self) -> bool:
        values = (self.flip, self.brightness, self.contrast, self.saturation, self.shift, self.scale)
        return any(v > 0 for v in values)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a float [N, 3, H, W] batch, got shape {tuple(x.shape)}")
        n = x.shape[0]
        # draw every parameter first (fixed order, so a seed fixes the whole augmentation)
        flip = torch.rand(n, generator=generator) < self.flip
        b, c, s = (
            1.0 + spread * (torch.rand(n, generator=generator) * 2.0 - 1.0) for spread in self._colour_spreads
        )
        zoom = 1.0 + self.scale * (torch.rand(n, generator=generator) * 2.0 - 1.0)
        # affine_grid maps output to input coordinates in [-1, 1]: a side is 2 units long
        shift = self.shift * 2.0 * (torch.rand(n, 2, generator=generator) * 2.0 - 1.0)
        if self.brightness > 0 or self.contrast > 0 or self.saturation > 0:
            x = _colour(x, b, c, s)
        if self.shift > 0 or self.scale > 0:
            return _geometric(x, flip, zoom, shift)  # the flip rides along in the sampling grid
        if self.flip > 0:
            x = torch.where(flip.to(x.device).view(n, 1, 1, 1), x.flip(-1), x)
        return x

    @property
    def _colour_spreads(self) -> tuple[float, float, float]:
        return self.brightness, self.contrast, self.saturation


def _colour(x: torch.Tensor, b: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Brightness b, contrast c (around the image's mean grey) and saturation s as ONE affine map.

    Per image: ``out = c*b * S x + (1 - c) * b * mean_grey``, where ``S = s I + (1 - s) 1 w^T`` blends
    each pixel with its grey ``w . x`` (S maps grey to grey, so the offset needs no S). One batched
    3x3 matrix product instead of a pass per jitter; clamped to 0..255 once.
    """
    n = x.shape[0]
    w = torch.tensor(_GRAY, dtype=torch.float32)
    sat = s.view(n, 1, 1) * torch.eye(3) + (1.0 - s).view(n, 1, 1) * w.view(1, 1, 3)
    mat = (c * b).view(n, 1, 1) * sat
    flat = x.reshape(n, 3, -1)
    mean_grey = torch.einsum("c,nc->n", w.to(x.device, x.dtype), flat.mean(dim=2))
    offset = ((1.0 - c) * b).to(x.device, x.dtype) * mean_grey
    out = torch.baddbmm(offset.view(n, 1, 1).expand(n, 3, 1), mat.to(x.device, x.dtype), flat)
    return out.view_as(x).clamp_(0.0, 255.0)


def _geometric(x: torch.Tensor, flip: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -1.0, 1.0) / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 255.0)  # bilinear weights can round a 255 a hair above
