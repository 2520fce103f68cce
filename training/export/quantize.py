"""An int8 version of a model: its pointwise (1x1) convolutions (or all of them) quantized, the rest float.

Decision (issue 11, stage 4): almost all of a MobileFaceNet-type network's multiply-adds are in
its pointwise convolutions, and those are also where int8 loses least: quantizing only them
(per-channel int8 weights, uint8 activations, static ranges from face crops, QDQ format) keeps
embeddings within cosine 0.99 of the float model, where quantizing every node did not (SFace:
0.989 mean, 0.977 lowest). The first convolution, the depthwise 3x3 convolutions, the PRelu
products, the fully connected layers and any adapter stay float32. A plain ResNet of 3x3
convolutions with ReLU (dlib's) keeps closer still with every convolution quantized (``nodes_choice
="conv"``; dlib, 300 LFW crops: cosine 0.9995 mean, 0.9988 lowest, 6.2 -> 2.7 ms on one thread).

Weights use 7 of their 8 bits by default (``reduce_range``): x86 CPUs without VNNI (AVX2,
AVX-512 before Cascade Lake) multiply uint8 by int8 with ``vpmaddubsw``, whose 16-bit sums of two
products saturate at 255 * 127 * 2 but not at 255 * 63 * 2, so a model quantized and checked on a
VNNI machine computes the same numbers on older ones. It costs little here (SFace with the
CelebA adapter, 400 LFW crops: cosine to float32 0.9966 mean, 0.9933 lowest, against 0.9973 and
0.9945 with 8 bits).

Steps: onnxruntime folds the graph's constant sub-graphs (SFace's weights are stored as int8
blocks expanded at load) into plain initializers; onnxruntime's ``quantize_static`` then inserts
Quantize/DequantizeLinear pairs around the pointwise convolutions, with activation ranges measured
(MinMax) on the calibration crops; nothing is written unless the quantized model's embeddings
agree with the float model's at cosine >= ``min_cosine`` on every check crop (crops other than the
calibration ones).

The card is the parent's under a new version, with the new file's sha256 and a ``quantization``
record in its evaluation. Similarities move slightly, so the copied calibration is only a starting
point: run ``facegate-train calibrate <out> --update-card`` (and ``eval``) before serving it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from service.model_card import ModelCard, file_sha256, load_card, write_card
from service.model_registry import derived_card
from service.pipeline.embed import Embedder
from service.pipeline.runtime import make_session

MIN_COSINE = 0.99
LICENCE_FILES = ("LICENSE", "NOTICE")
OPSET = 17


class QuantizationParityError(ValueError):
    """The quantized model's embeddings drift too far from the float model's."""


@dataclass(frozen=True)
class Quantized:
    path: Path
    card: ModelCard
    nodes: list[str]
    cosine_mean: float
    cosine_min: float


def fold_constants(src: Path, dst: Path) -> onnx.ModelProto:
    """``src`` with its constant sub-graphs folded by onnxruntime (basic level: no fused or
    device-specific operators), with one default-domain opset import."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(dst))
    used = {n.domain for n in model.graph.node}
    kept = [o for o in model.opset_import if o.domain not in ("", "ai.onnx") and o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET), *kept])
    onnx.save(model, str(dst))
    return model


NODE_CHOICES = ("pointwise", "conv")


def convs_to_quantize(model: onnx.ModelProto, which: str) -> list[str]:
    """``pointwise``: the 1x1 convolutions (a MobileFaceNet's bulk); ``conv``: every convolution
    with a constant weight (a ResNet of 3x3 convolutions, such as dlib's)."""
    if which == "pointwise":
        return pointwise_convs(model)
    if which != "conv":
        raise ValueError(f"unknown node choice {which!r}; valid: {', '.join(NODE_CHOICES)}")
    inits = {t.name for t in model.graph.initializer}
    return [
        n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits
    ]


def pointwise_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the 1x1 convolutions over more than one input channel with group 1 (not the
    per-channel 1x1 convolutions that stand for PRelu's products)."""
    inits = {t.name: t for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        dims = tuple(inits[node.input[1]].dims)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if len(dims) == 4 and dims[2:] == (1, 1) and group == 1 and dims[1] > 1:
            names.append(node.name)
    return names


class _Crops(CalibrationDataReader):
    def __init__(self, name: str, crops: np.ndarray) -> None:
        self._name = name
        self._it: Iterator[np.ndarray] = iter(crops)

    def get_next(self) -> dict[str, np.ndarray] | None:
        crop = next(self._it, None)
        return None if crop is None else {self._name: crop[None]}


def quantize_model(
    model_dir: Path,
    out_dir: Path,
    calibration_crops: np.ndarray,
    check_crops: np.ndarray,
    version: str,
    calibration_about: str,
    min_cosine: float = MIN_COSINE,
    reduce_range: bool = True,
    nodes_choice: str = "pointwise",
) -> Quantized:
    """Write ``out_dir/model.onnx`` (+ card) or raise QuantizationParityError and write nothing."""
    parent = load_card(model_dir)
    if parent.fusion:
        raise ValueError("quantize the members of a fused model, then fuse them again")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "model.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        folded_path = Path(tmp) / "folded.onnx"
        folded = fold_constants(model_dir / parent.file, folded_path)
        nodes = convs_to_quantize(folded, nodes_choice)
        if not nodes:
            raise ValueError(f"{model_dir} has no {nodes_choice} convolutions to quantize")
        quantized_path = Path(tmp) / "quantized.onnx"
        quantize_static(
            str(folded_path),
            str(quantized_path),
            _Crops(folded.graph.input[0].name, calibration_crops),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=reduce_range,
        )
        reference = Embedder(model_dir).embed(check_crops)
        candidate = _embed(quantized_path, check_crops)
        cos = np.sum(reference * candidate, axis=1)
        if float(cos.min()) < min_cosine:
            raise QuantizationParityError(
                f"quantized embeddings reach cosine {cos.min():.4f} to the float model's on "
                f"{len(cos)} crops (< {min_cosine}): not written"
            )
        quantized_path.replace(target)
    bits = "7-bit (reduce_range)" if reduce_range else "8-bit"
    record = {
        "method": f"onnxruntime quantize_static, QDQ, per-channel int8 weights ({bits}), uint8 activations, "
        "MinMax",
        "nodes": f"{len(nodes)} {'pointwise ' if nodes_choice == 'pointwise' else ''}convolutions in int8; "
        "every other node float32",
        "calibration_crops": f"{len(calibration_crops)}: {calibration_about}",
        "check_crops": len(check_crops),
        "cosine_to_parent_mean": round(float(cos.mean()), 6),
        "cosine_to_parent_min": round(float(cos.min()), 6),
    }
    card = derived_card(
        parent,
        version,
        file=target.name,
        sha256=file_sha256(target),
        evaluation={"quantization": record, "parent_evaluation_not_recomputed": parent.version},
        provenance=f"{parent.version} ({parent.name}) with {record['nodes']}: {record['method']}; "
        f"{parent.provenance}",
    )
    write_card(card, out_dir)
    for name in LICENCE_FILES:  # the weights' terms travel with them
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, out_dir / name)
    return Quantized(target, card, nodes, float(cos.mean()), float(cos.min()))


def _embed(path: Path, crops: np.ndarray) -> np.ndarray:
    """The quantized file before it has a card (so not yet an ``Embedder``), in the service's session."""
    session = make_session(path)
    name = session.get_inputs()[0].name
    out = np.concatenate([session.run(None, {name: crops[i : i + 64]})[0] for i in range(0, len(crops), 64)])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


__all__ = [
    "QuantizationParityError",
    "Quantized",
    "fold_constants",
    "pointwise_convs",
    "quantize_model",
    "convs_to_quantize",
    "NODE_CHOICES",
]
