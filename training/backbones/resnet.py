"""A small ResNet-style backbone in the "improved residual" form used by ArcFace (iresnet).

Each block is BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN plus a shortcut; a stage's
first block downsamples. The head is BN -> dropout -> flatten -> linear -> BN1d, so the spatial
layout of the aligned face is kept (no global pooling). ``layers`` and ``widths`` make it as
small as a test needs or as large as resnet-18/34.
"""

from __future__ import annotations

import torch
from torch import nn

from training.backbones.base import Backbone, arcface_template


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResNetFace(Backbone):
    def __init__(
        self,
        embedding_dim: int = 128,
        input_size: int = 112,
        layers: tuple[int, ...] = (2, 2, 2, 2),
        widths: tuple[int, ...] = (64, 128, 256, 512),
        stem_width: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"layers and widths must be non-empty, of equal length: {layers}, {widths}")
        factor = 2 ** len(layers)
        if input_size % factor != 0:
            raise ValueError(f"input_size must be a multiple of {factor} for {len(layers)} stages")
        self.input_size = (input_size, input_size)
        self.alignment_template = arcface_template(self.input_size)
        self.embedding_dim = embedding_dim
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.PReLU(stem)
        )
        blocks: list[nn.Module] = []
        cin = stem
        for n, cout in zip(layers, widths, strict=True):
            for i in range(n):
                blocks.append(_Block(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.body = nn.Sequential(*blocks)
        side = input_size // factor
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(cin * side * side, embedding_dim),
            nn.BatchNorm1d(embedding_dim),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))
