"""Backbone registry: ``build_backbone(name, embedding_dim=..., **kw)``.

Every backbone takes float32 NCHW RGB in raw 0..255 pixels, normalises inside and returns
L2-normalised ``[N, D]`` embeddings; it exposes ``input_size`` (w, h), ``alignment_template``
and ``embedding_dim`` (see ``training.backbones.base``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from training.backbones.base import ARCFACE_TEMPLATE_112, Backbone, arcface_template, num_parameters
from training.backbones.mobilefacenet import MobileFaceNet
from training.backbones.resnet import ResNetFace


def _resnet18(**kw: Any) -> ResNetFace:
    return ResNetFace(layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), **kw)


def _resnet_small(**kw: Any) -> ResNetFace:
    return ResNetFace(layers=(1, 2, 2, 1), widths=(32, 64, 128, 256), **kw)


def _dlib_resnet(**kw: Any) -> Backbone:
    # Imported on use: the dlib port lives in its own module (training/backbones/dlib_resnet.py).
    from training.backbones import dlib_resnet

    return dlib_resnet.build(**kw)


BACKBONES: dict[str, Callable[..., Backbone]] = {
    "mobilefacenet": MobileFaceNet,
    "resnet": ResNetFace,
    "resnet18": _resnet18,
    "resnet_small": _resnet_small,
    # ---- other backbones register here ----
    "dlib_resnet": _dlib_resnet,
}


def build_backbone(name: str, embedding_dim: int | None = None, **kw: Any) -> Backbone:
    """Instantiate a registered backbone; unknown names raise ValueError listing the valid ones."""
    try:
        ctor = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(sorted(BACKBONES))}") from None
    if embedding_dim is not None:
        kw["embedding_dim"] = embedding_dim
    return ctor(**kw)


__all__ = [
    "ARCFACE_TEMPLATE_112",
    "BACKBONES",
    "Backbone",
    "MobileFaceNet",
    "ResNetFace",
    "arcface_template",
    "build_backbone",
    "num_parameters",
]
