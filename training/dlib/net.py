"""Parse a serialised dlib DNN (``dlib/dnn/core.h``) into a flat, input-to-output list of layers.

A dlib network is a nest of templates, ``loss<layer<layer<...<input>>>>``, and it is written
outer to inner with each wrapper's own fields split around its sub-network:

- loss layer: int version (1), the loss details, then the sub-network;
- ``add_layer`` over a sub-network: int version (2) first, the sub-network, then the layer
  details, three bools and the tensors ``x_grad``, ``cached_output`` and ``params_grad``
  (version 1, from dlib before 2017, lacks ``params_grad`` and is not supported: its version
  number could not be told from a tag's);
- ``add_layer`` over the input layer (the innermost): int version (2 or 3), the input layer,
  the layer details, three bools, ``x_grad``, ``cached_output``, ``grad_final`` and (version 3)
  an unsigned ``sample_expansion_factor``;
- ``add_tag_layer`` and ``add_skip_layer``: int version (1) then the sub-network; nothing else.

So the stream opens with a run of version numbers (outer to inner), then the input layer, then
the details of each ``add_layer`` inner to outer. Tags and skips leave only their version number:
which tag an ``add_prev``/``skip`` refers to is a compile-time property of the network type, not
in the file, so they come out as ``Layer("tag_or_skip")`` and the network builder checks the
sequence against its own definition.

Each layer's details open with a version string naming its type; the readers below know the
types dlib's face-recognition network uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.dlib.format import DlibFormatError, DlibReader

logger = logging.getLogger(__name__)

TAG_OR_SKIP = "tag_or_skip"


@dataclass(frozen=True)
class Layer:
    """One layer: ``kind`` (con, affine, relu, add_prev, max_pool, avg_pool, fc, input_rgb_image,
    loss_metric, tag_or_skip) and its settings and parameters (numpy arrays for weights)."""

    kind: str
    attrs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNetwork:
    loss: Layer
    layers: list[Layer]  # input first, last layer before the loss last


def _scalar_multipliers(r: DlibReader) -> dict:
    names = ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult")
    return {name: r.read_float() for name in names}


def _split_params(params: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
    flat = params.reshape(-1)
    out, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        if offset + size > flat.size:
            raise DlibFormatError(f"parameter tensor of {flat.size} values too small for {shapes}")
        out.append(flat[offset : offset + size].reshape(shape).copy())
        offset += size
    return out


def _read_con(r: DlibReader, version: str) -> Layer:
    params = r.read_tensor()
    num_filters, nr, nc = r.read_int(), r.read_int(), r.read_int()
    stride, padding = (r.read_int(), r.read_int()), (r.read_int(), r.read_int())
    filters_shape, bias_shape = r.read_alias_tensor(), r.read_alias_tensor()
    attrs = {"num_filters": num_filters, "kernel": (nr, nc), "stride": stride, "padding": padding}
    attrs |= _scalar_multipliers(r)
    attrs["use_bias"] = r.read_bool() if version in ("con_5", "con_6") else True
    attrs["use_relu"] = r.read_bool() if version == "con_6" else False
    shapes = [filters_shape] + ([bias_shape] if attrs["use_bias"] else [])
    parts = _split_params(params, shapes)
    attrs["weight"] = parts[0]
    attrs["bias"] = parts[1].reshape(-1) if attrs["use_bias"] else None
    return Layer("con", attrs)


def _read_fc(r: DlibReader, version: str) -> Layer:
    num_outputs, num_inputs = r.read_uint(), r.read_uint()
    params = r.read_tensor()
    weights_shape, bias_shape = r.read_alias_tensor(), r.read_alias_tensor()
    bias_mode = r.read_int()  # 0: has bias, 1: no bias
    attrs = {"num_outputs": num_outputs, "num_inputs": num_inputs} | _scalar_multipliers(r)
    use_bias_flag = r.read_bool() if version == "fc_3" else True
    use_bias = bias_mode == 0 and use_bias_flag
    parts = _split_params(params, [weights_shape] + ([bias_shape] if use_bias else []))
    # dlib computes output = input @ weights with weights [num_inputs, num_outputs].
    attrs["weight"] = parts[0].reshape(num_inputs, num_outputs)
    attrs["bias"] = parts[1].reshape(-1) if use_bias else None
    return Layer("fc", attrs)


def _read_affine(r: DlibReader, version: str) -> Layer:
    params = r.read_tensor()
    gamma_shape, beta_shape = r.read_alias_tensor(), r.read_alias_tensor()
    mode = r.read_int()
    disabled = r.read_bool() if version == "affine_2" else False
    if disabled:
        return Layer("affine", {"mode": mode, "disabled": True, "gamma": None, "beta": None})
    gamma, beta = _split_params(params, [gamma_shape, beta_shape])
    return Layer("affine", {"mode": mode, "disabled": False, "gamma": gamma, "beta": beta})


def _read_bn(r: DlibReader, version: str) -> Layer:
    """A batch-norm layer, converted to the affine layer dlib's testing network uses."""
    params = r.read_tensor()
    gamma_shape, beta_shape = r.read_alias_tensor(), r.read_alias_tensor()
    r.read_tensor(), r.read_tensor()  # batch means and inverse stds from the last training step
    running_means, running_vars = r.read_tensor(), r.read_tensor()
    r.read_uint(), r.read_uint()  # num_updates, running_stats_window_size
    _scalar_multipliers(r)
    eps = r.read_float()
    gamma, beta = _split_params(params, [gamma_shape, beta_shape])
    scale = gamma / np.sqrt(running_vars.reshape(gamma.shape) + eps)
    shift = beta - scale * running_means.reshape(gamma.shape)
    mode = 0 if version == "bn_con2" else 1
    return Layer("affine", {"mode": mode, "disabled": False, "gamma": scale, "beta": shift})


def _read_pool(kind: str) -> Callable[[DlibReader, str], Layer]:
    def read(r: DlibReader, version: str) -> Layer:
        nr, nc = r.read_int(), r.read_int()
        stride, padding = (r.read_int(), r.read_int()), (r.read_int(), r.read_int())
        return Layer(kind, {"window": (nr, nc), "stride": stride, "padding": padding})

    return read


def _read_relu(r: DlibReader, version: str) -> Layer:
    return Layer("relu", {"disabled": r.read_bool() if version == "relu_2" else False})


def _read_add_prev(r: DlibReader, version: str) -> Layer:
    return Layer("add_prev", {})


def _read_input_rgb(r: DlibReader, version: str) -> Layer:
    mean = (r.read_float(), r.read_float(), r.read_float())
    attrs: dict = {"mean_rgb": mean, "size": None}
    if version == "input_rgb_image_sized":
        attrs["size"] = (r.read_uint(), r.read_uint())  # (rows, columns)
    return Layer("input_rgb_image", attrs)


def _read_loss_metric(r: DlibReader, version: str) -> Layer:
    if version == "loss_metric_":
        return Layer("loss_metric", {"margin": 0.1, "dist_thresh": 0.75})
    return Layer("loss_metric", {"margin": r.read_float(), "dist_thresh": r.read_float()})


LAYER_READERS: dict[str, Callable[[DlibReader, str], Layer]] = {
    "con_4": _read_con,
    "con_5": _read_con,
    "con_6": _read_con,
    "fc_2": _read_fc,
    "fc_3": _read_fc,
    "affine_": _read_affine,
    "affine_2": _read_affine,
    "bn_con2": _read_bn,
    "bn_fc2": _read_bn,
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "relu_": _read_relu,
    "relu_2": _read_relu,
    "add_prev_": _read_add_prev,
    "input_rgb_image": _read_input_rgb,
    "input_rgb_image_sized": _read_input_rgb,
    "loss_metric_": _read_loss_metric,
    "loss_metric_2": _read_loss_metric,
}


def read_layer_details(r: DlibReader) -> Layer:
    start = r.pos
    version = r.read_string()
    reader = LAYER_READERS.get(version)
    if reader is None:
        raise DlibFormatError(
            f"unsupported layer type {version!r} at byte {start}; known: {sorted(LAYER_READERS)}"
        )
    return reader(r, version)


def _skip_add_layer_state(r: DlibReader, tensors: int) -> None:
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output/gradient disabled
        r.read_bool()
    for _ in range(tensors):  # gradients and cached outputs from training: not needed
        r.read_tensor()


def parse_network(data: bytes) -> DlibNetwork:
    """Parse a whole serialised network (loss layer outermost) from bytes."""
    r = DlibReader(data)
    if r.read_int() != 1:
        raise DlibFormatError("expected a loss layer (version 1) at the start of the stream")
    loss = read_layer_details(r)
    chain: list[int] = []  # wrapper versions, outer to inner
    while True:
        version = r.read_int()
        name = r.peek_string()
        if name is not None and name.startswith("input"):
            if version not in (2, 3):
                raise DlibFormatError(f"add_layer over the input has version {version}, expected 2 or 3")
            input_version = version
            break
        if version not in (1, 2):
            raise DlibFormatError(f"unexpected wrapper version {version} at byte {r.pos}")
        chain.append(version)
    layers = [read_layer_details(r), read_layer_details(r)]
    _skip_add_layer_state(r, tensors=3)
    if input_version == 3:
        r.read_uint()  # sample_expansion_factor
    for version in reversed(chain):
        if version == 1:
            layers.append(Layer(TAG_OR_SKIP))
            continue
        layers.append(read_layer_details(r))
        _skip_add_layer_state(r, tensors=3)
    if not r.at_end:
        logger.warning("%d bytes left after the network", len(r) - r.pos)
    return DlibNetwork(loss=loss, layers=layers)


def read_dat(path: Path) -> DlibNetwork:
    """Read a ``.dat`` file written by dlib's ``serialize(file) << net``."""
    return parse_network(Path(path).read_bytes())
