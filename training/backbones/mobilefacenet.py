"""MobileFaceNet (Chen et al., 2018): about 1 M parameters at 112x112 and a 128-d embedding.

Depthwise-separable inverted-residual bottlenecks, PReLU, and a global depthwise convolution
(GDConv) in place of global average pooling, so that positions in the aligned face keep their
own weights. ``width`` scales every channel count (tests use a narrow one); the input side
must be a multiple of 16.
"""

from __future__ import annotations

import torch
from torch import nn

from training.backbones.base import Backbone, arcface_template


class _ConvBN(nn.Sequential):
    def __init__(
        self, cin: int, cout: int, k: int, s: int, groups: int = 1, act: bool = True, pad: int | None = None
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, s, padding=k // 2 if pad is None else pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            _ConvBN(cin, hidden, 1, 1),
            _ConvBN(hidden, hidden, 3, stride, groups=hidden),
            _ConvBN(hidden, cout, 1, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


# (expansion, output channels, repeats, first stride), as in the paper's Table 1.
_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class MobileFaceNet(Backbone):
    def __init__(self, embedding_dim: int = 128, input_size: int = 112, width: float = 1.0) -> None:
        super().__init__()
        if input_size % 16 != 0 or input_size < 16:
            raise ValueError(f"MobileFaceNet input_size must be a positive multiple of 16, got {input_size}")
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.input_size = (input_size, input_size)
        self.alignment_template = arcface_template(self.input_size)
        self.embedding_dim = embedding_dim

        def ch(c: int) -> int:
            return max(8, int(round(c * width)))

        c64 = ch(64)
        layers: list[nn.Module] = [_ConvBN(3, c64, 3, 2), _ConvBN(c64, c64, 3, 1, groups=c64)]
        cin = c64
        for expansion, cout, repeats, stride in _SETTING:
            for i in range(repeats):
                layers.append(_Bottleneck(cin, ch(cout), stride if i == 0 else 1, expansion))
                cin = ch(cout)
        c512 = ch(512)
        layers.append(_ConvBN(cin, c512, 1, 1))
        self.body = nn.Sequential(*layers)
        side = input_size // 16
        self.gdconv = _ConvBN(c512, c512, side, 1, groups=c512, act=False, pad=0)
        self.linear = nn.Conv2d(c512, embedding_dim, 1, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)
        _init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gdconv(self.body(x))
        return self.bn(self.linear(x).flatten(1))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
