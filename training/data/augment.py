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

        def uniform(spread: float) -> torch.Tensor:
            u = torch.rand(n, generator=generator) * 2.0 - 1.0
            return (1.0 + spread * u).to(x.device, x.dtype).view(n, 1, 1, 1)

        if self.flip > 0:
            mask = (torch.rand(n, generator=generator) < self.flip).to(x.device).view(n, 1, 1, 1)
            x = torch.where(mask, x.flip(-1), x)
        if self.shift > 0 or self.scale > 0:
            x = self._geometric(x, generator)
        gray_w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        if self.brightness > 0:
            x = x * uniform(self.brightness)
        if self.contrast > 0:
            mean = (x * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - mean) * uniform(self.contrast) + mean
        if self.saturation > 0:
            gray = (x * gray_w).sum(1, keepdim=True)
            x = (x - gray) * uniform(self.saturation) + gray
        return x.clamp_(0.0, 255.0)

    def _geometric(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = x.shape[0]
        zoom = 1.0 + self.scale * (torch.rand(n, generator=generator) * 2.0 - 1.0)
        # affine_grid maps output to input coordinates in [-1, 1]: a side is 2 units long
        t = self.shift * 2.0 * (torch.rand(n, 2, generator=generator) * 2.0 - 1.0)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = 1.0 / zoom
        theta[:, 1, 1] = 1.0 / zoom
        theta[:, :, 2] = t
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
