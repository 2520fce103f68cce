"""Parity of FaceGate's dlib ResNet (torch and ONNX) with dlib's own compute_face_descriptor.

    python bench/dlib_parity.py [--n 200] [--onnx models/dlib/model.onnx] [--dat PATH] [--data DIR]

Faces: ``n`` LFW images (evenly spaced over the sorted list), each run through what
``face_recognition.face_encodings`` does: dlib's HOG frontal detector (1 upsample), the 5-point
shape predictor, and the 150x150 chip ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``
(what ``compute_face_descriptor(img, shape)`` cuts internally; num_jitters=1). The chip is fed to
dlib (``compute_face_descriptor(chip)``), to the torch ``DlibResNet`` and to the ONNX export.
Prints min/mean cosine per comparison; exits 1 if any face is below 0.999.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.backbones.dlib_resnet import DlibResNet  # noqa: E402
from training.export.onnx_export import export_onnx, onnx_embed, parity_cosines  # noqa: E402
from training.paths import paths  # noqa: E402

THRESHOLD = 0.999


def default_models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise SystemExit("face_recognition_models is not installed: pass --dat")
    return Path(spec.origin).parent / "models"


def dlib_faces(
    images: list[Path], models_dir: Path, dat: Path, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chips, descriptors from the chip overload, descriptors from the image+shape overload."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    net = dlib.face_recognition_model_v1(str(dat))
    chips, from_chip, from_image = [], [], []
    for path in images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        boxes = detector(rgb, 1)
        if not boxes:
            continue
        shape = shapes(rgb, max(boxes, key=lambda b: b.area()))
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25))
        chips.append(chip)
        from_chip.append(np.asarray(net.compute_face_descriptor(chip), np.float32))
        from_image.append(np.asarray(net.compute_face_descriptor(rgb, shape, 1), np.float32))
        if len(chips) == n:
            break
    return np.stack(chips), np.stack(from_chip), np.stack(from_image)


def report(name: str, cos: np.ndarray) -> bool:
    ok = bool(cos.min() >= THRESHOLD)
    print(f"{name:<34} min {cos.min():.7f}  mean {cos.mean():.7f}  {'ok' if ok else 'FAIL'}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--data", type=Path, default=paths().data)
    p.add_argument("--dat", type=Path, help="dlib_face_recognition_resnet_model_v1.dat")
    p.add_argument("--onnx", type=Path, default=REPO / "models" / "dlib" / "model.onnx")
    args = p.parse_args()
    models_dir = args.dat.parent if args.dat else default_models_dir()
    dat = args.dat or models_dir / "dlib_face_recognition_resnet_model_v1.dat"
    all_images = sorted((args.data / "lfw" / "images").glob("*/*.jpg"))
    if not all_images:
        raise SystemExit(f"no LFW images under {args.data / 'lfw' / 'images'}")
    step = max(1, len(all_images) // (args.n * 2))  # spare images for the ones without a detection
    t0 = time.perf_counter()
    chips, dlib_chip, dlib_image = dlib_faces(all_images[::step], models_dir, dat, args.n)
    print(f"{len(chips)} LFW faces (every {step}th image), dlib chips in {time.perf_counter() - t0:.1f} s")

    model = DlibResNet.from_dat(dat).eval()
    with torch.no_grad():
        ours = np.concatenate(
            [
                model.descriptor(torch.from_numpy(c).permute(0, 3, 1, 2).float()).numpy()
                for c in np.array_split(chips, 10)
            ]
        )
    onnx_path = args.onnx
    if not onnx_path.is_file():
        onnx_path = export_onnx(model, (150, 150), Path(tempfile.mkdtemp()), chips[:32])
        print(f"{args.onnx} absent: exported a fresh copy to {onnx_path}")
    onnx = onnx_embed(onnx_path, chips)

    ok = report("dlib chip vs dlib image+shape", parity_cosines(dlib_chip, dlib_image))
    ok &= report("torch vs dlib", parity_cosines(ours, dlib_chip))
    ok &= report("onnx vs dlib", parity_cosines(onnx, dlib_chip))
    ok &= report("onnx vs torch", parity_cosines(onnx, ours))
    print(f"max |torch - dlib| on unnormalised descriptors: {np.abs(ours - dlib_chip).max():.2e}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
