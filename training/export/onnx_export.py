"""ONNX export of any embedding backbone, checked against onnxruntime, and its model card.

The exported graph follows FaceGate's contract for every embedding model: input ``image``,
uint8 ``[N, H, W, 3]`` RGB with a dynamic batch; the conversion to float NCHW and the
backbone's own normalisation happen inside the graph; output ``embedding``, float32 ``[N, D]``,
L2-normalised. The export fails unless onnxruntime and torch agree on real crops.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from service.model_card import (
    Alignment,
    Calibration,
    InputSpec,
    ModelCard,
    file_sha256,
    load_card,
    write_card,
)
from service.pipeline.align import align_face
from service.pipeline.decode import decode_image
from service.pipeline.detect import FaceDetector

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MIN_PARITY_COSINE = 0.9999
_CHUNK = 32


class ExportParityError(RuntimeError):
    """onnxruntime's embeddings differ from torch's beyond the allowed tolerance."""


class Uint8ImageInput(nn.Module):
    """uint8 NHWC RGB -> float NCHW 0..255 -> backbone -> L2-normalised embedding."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return F.normalize(self.backbone(x), p=2.0, dim=1, eps=1e-12)


def _check_crops(crops: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    w, h = input_size
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (h, w, 3) or len(crops) == 0:
        raise ValueError(f"check_crops must be uint8 [N>0, {h}, {w}, 3], got {crops.dtype} {crops.shape}")
    return np.ascontiguousarray(crops)


def torch_embed(model: nn.Module, crops: np.ndarray) -> np.ndarray:
    """Embeddings of uint8 NHWC crops from the wrapped torch model, in chunks."""
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), _CHUNK):
            out.append(model(torch.from_numpy(crops[i : i + _CHUNK])).numpy())
    return np.concatenate(out).astype(np.float32)


def onnx_embed(path: Path, crops: np.ndarray) -> np.ndarray:
    """Embeddings from onnxruntime (CPU, all graph optimisations, as the service runs it)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != (["image"], ["embedding"]):
        raise ExportParityError(f"ONNX inputs/outputs are {names}, expected (['image'], ['embedding'])")
    chunks = [
        session.run(["embedding"], {"image": crops[i : i + _CHUNK]})[0] for i in range(0, len(crops), _CHUNK)
    ]
    return np.concatenate(chunks).astype(np.float32)


def parity_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row cosine similarity of two embedding matrices."""
    if a.shape != b.shape:
        raise ExportParityError(f"embedding shapes differ: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def aligned_crops(
    images: Sequence[Path], template: np.ndarray, size: tuple[int, int], models_dir: Path, limit: int
) -> np.ndarray:
    """Real faces to check an export on: the largest face of each image through the service's
    decode -> MTCNN -> ``align_face`` onto ``template`` at ``size``, up to ``limit`` crops."""
    detector = FaceDetector(models_dir)
    template = np.asarray(template, dtype=np.float64)
    crops = []
    for path in images:
        rgb = decode_image(path.read_bytes(), max_pixels=40_000_000)
        faces = detector.detect(rgb)
        if faces:
            crops.append(align_face(rgb, faces[0].landmarks, template, size))
        if len(crops) >= limit:
            break
    if not crops:
        raise RuntimeError(f"no face found in {len(images)} images: cannot check the export")
    return np.stack(crops)


def export_onnx(
    backbone: nn.Module,
    input_size: tuple[int, int],
    out_dir: Path,
    check_crops: np.ndarray,
    opset: int = 17,
    min_cosine: float = MIN_PARITY_COSINE,
) -> Path:
    """Export ``backbone`` to ``out_dir/model.onnx``; raise ExportParityError (and delete the file)
    unless torch and onnxruntime agree with cosine >= ``min_cosine`` on every crop.

    ``input_size`` is (width, height); ``check_crops`` are real aligned faces, uint8 [N, H, W, 3].
    """
    crops = _check_crops(check_crops, input_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    model = Uint8ImageInput(backbone).eval()
    w, h = input_size
    example = torch.zeros(2, h, w, 3, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["embedding"],
            dynamic_axes={"image": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    try:
        cos = parity_cosines(torch_embed(model, crops), onnx_embed(path, crops))
        worst = float(cos.min())
        if not worst >= min_cosine:
            raise ExportParityError(
                f"torch and onnxruntime disagree: min cosine {worst:.6f} < {min_cosine} "
                f"on {int((cos < min_cosine).sum())} of {len(cos)} crops"
            )
    except Exception:
        path.unlink(missing_ok=True)
        raise
    logger.info("exported %s: torch/onnxruntime cosine min %.7f mean %.7f", path, worst, float(cos.mean()))
    return path


def write_model_card(
    out_dir: Path,
    name: str,
    version: str,
    alignment: Alignment | Mapping[str, Any],
    calibration: Calibration | Mapping[str, Any],
    evaluation: Mapping[str, Any],
    license: str,
    training_data: Sequence[Mapping[str, str]],
    provenance: str,
    embedding_dim: int,
) -> Path:
    """Write ``out_dir/model.json`` for ``out_dir/model.onnx`` (sha256 computed here) and reload it."""
    out_dir = Path(out_dir)
    onnx_path = out_dir / MODEL_FILE
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no {MODEL_FILE} in {out_dir}: export it first")
    align = alignment if isinstance(alignment, Alignment) else Alignment.model_validate(dict(alignment))
    calib = (
        calibration if isinstance(calibration, Calibration) else Calibration.model_validate(dict(calibration))
    )
    card = ModelCard(
        name=name,
        version=version,
        file=MODEL_FILE,
        sha256=file_sha256(onnx_path),
        license=license,
        training_data=[dict(d) for d in training_data],
        input=InputSpec(size=align.size),
        alignment=align,
        embedding_dim=embedding_dim,
        calibration=calib,
        evaluation=dict(evaluation),
        provenance=provenance,
    )
    path = write_card(card, out_dir)
    load_card(out_dir)  # the card must read back and match the file
    return path
