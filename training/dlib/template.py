"""Fit the 5-point alignment template that puts MTCNN's landmarks where dlib's face chips put faces.

dlib's face ResNet was trained on chips from ``dlib.get_face_chip(img, shape, size=150,
padding=0.25)``, where ``shape`` comes from dlib's 5-point predictor (eye corners and the base of
the nose, not MTCNN's eye centres, nose tip and mouth corners). The chip is the similarity
transform ``M`` that takes the shape onto fixed points (``dlib_chip_points``, copied from
``get_face_chip_details`` in dlib's ``image_transforms/interpolation.h``).

For each image: dlib's frontal (HOG) detector + 5-point predictor -> ``M``; MTCNN -> landmarks
``L`` of the same face; ``M(L)`` are MTCNN's points in dlib-chip pixels. The template is their
trimmed mean over images (10 % cut at each end, per coordinate). Residuals are measured on a
held-out half:

* ``point``: distance between ``S(L)`` and the template after the per-image similarity fit ``S``
  of ``L`` onto the template (how well MTCNN's 5 points fit one rigid template);
* ``chip``: distance, in chip pixels, between where our alignment ``S`` and dlib's ``M`` send the
  same image points (dlib's 5 points and a 3x3 grid spanning the chip): how far FaceGate's crop is
  from the chip dlib's network was trained on.

    facegate-train fit-template --out /tmp/template.json
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.pipeline.align import align_face, similarity_transform
from service.pipeline.decode import decode_image
from training.evaluation.pairs import list_identities, read_lfw_pairs
from training.paths import require

log = logging.getLogger(__name__)

# get_face_chip_details(): where dlib puts its 5 shape points, as fractions of an unpadded chip.
_DLIB_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)


def dlib_chip_points(size: int = 150, padding: float = 0.25) -> np.ndarray:
    return (padding + _DLIB_5) / (2 * padding + 1) * size


def dlib_chip_transform(shape: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """The 2x3 image -> chip map that ``dlib.get_face_chip(img, shape, size, padding)`` samples with.

    As in dlib's ``chip_details``: a similarity fit of the chip points onto ``shape`` gives the
    angle, scale ``s`` and the image point of the chip centre ``(size/2, size/2)``; the extraction
    rectangle is ``size * s - 1`` pixels wide around it (``centered_drect``) and its corners go to
    chip pixels ``0`` and ``size - 1`` (``get_mapping_to_chip``).
    """
    t = similarity_transform(dlib_chip_points(size, padding), shape)  # chip -> image
    s = float(np.hypot(*t[:, 0]))
    rot = t[:, :2] / s
    centre = apply(t, np.array([size / 2, size / 2]))
    s_actual = (size * s - 1) / (size - 1)
    offset = centre - s_actual * rot @ np.full(2, (size - 1) / 2)
    to_image = np.vstack([np.c_[s_actual * rot, offset], [0.0, 0.0, 1.0]])
    return np.linalg.inv(to_image)[:2]


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return np.asarray(pts, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def trimmed_mean(x: np.ndarray, cut: float = 0.1) -> np.ndarray:
    s = np.sort(x, axis=0)
    k = int(cut * len(s))
    return s[k : len(s) - k].mean(axis=0)


@dataclass(frozen=True)
class Sample:
    key: str
    mtcnn: np.ndarray  # (5, 2) MTCNN landmarks in image pixels
    dlib: np.ndarray  # (5, 2) dlib 5-point shape in image pixels
    to_chip: np.ndarray  # 2x3 image -> dlib chip


def collect(
    image_root: Path, keys: list[str], models_dir: Path, size: int, padding: float
) -> tuple[list, dict]:
    """Samples where dlib and MTCNN both find the same (largest) face; counts of the others."""
    import dlib
    import face_recognition_models as frm

    from service.pipeline.detect import FaceDetector

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    mtcnn = FaceDetector(models_dir)
    samples: list[Sample] = []
    counts = {"images": len(keys), "no_dlib_face": 0, "no_mtcnn_face": 0, "different_face": 0}
    for n, key in enumerate(keys, 1):
        rgb = decode_image((image_root / key).read_bytes(), 40_000_000)
        rects = hog(rgb, 1)
        if not rects:
            counts["no_dlib_face"] += 1
            continue
        rect = max(rects, key=lambda r: r.area())
        shape = predictor(rgb, rect)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
        faces = mtcnn.detect(rgb)
        if not faces:
            counts["no_mtcnn_face"] += 1
            continue
        centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
        face = min(faces, key=lambda f: np.hypot(*(np.array(f.box[:2]) + np.array(f.box[2:]) - 2 * centre)))
        if np.linalg.norm(face.landmarks.mean(0) - pts.mean(0)) > 0.5 * rect.width():
            counts["different_face"] += 1
            continue
        samples.append(
            Sample(key, face.landmarks.astype(np.float64), pts, dlib_chip_transform(pts, size, padding))
        )
        if n % 200 == 0:
            log.info("%d/%d images, %d samples", n, len(keys), len(samples))
    return samples, counts


def residuals(samples: list[Sample], template: np.ndarray, size: int) -> dict[str, dict[str, float]]:
    grid = np.stack(np.meshgrid(*[np.linspace(0, size - 1, 3)] * 2), -1).reshape(-1, 2)
    point, chip = [], []
    for s in samples:
        fit = similarity_transform(s.mtcnn, template)
        point.append(np.linalg.norm(apply(fit, s.mtcnn) - template, axis=1))
        # image points: dlib's shape, and the image points that dlib's chip maps to the grid
        inv = np.linalg.inv(np.vstack([s.to_chip, [0, 0, 1]]))[:2]
        img_pts = np.vstack([s.dlib, apply(inv, grid)])
        chip.append(np.linalg.norm(apply(fit, img_pts) - apply(s.to_chip, img_pts), axis=1))
    out = {}
    for name, vals in (("point", np.concatenate(point)), ("chip", np.concatenate(chip))):
        out[name] = {
            "mean_px": round(float(vals.mean()), 3),
            "p95_px": round(float(np.percentile(vals, 95)), 3),
        }
    return out


def warp_check(image_root: Path, samples: list[Sample], size: int, padding: float) -> float:
    """Mean absolute grey-level difference between ``align_face`` of dlib's points onto their
    ``dlib_chip_transform`` images and ``dlib.get_face_chip``: checks the chip geometry (0 = same)."""
    import dlib

    diffs = []
    for s in samples:
        rgb = decode_image((image_root / s.key).read_bytes(), 40_000_000)
        rect = dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in s.dlib])
        ref = dlib.get_face_chip(rgb, shape, size=size, padding=padding)
        ours = align_face(rgb, s.dlib, apply(s.to_chip, s.dlib), (size, size))
        diffs.append(np.abs(ref.astype(np.float64) - ours).mean())
    return float(np.mean(diffs))


def embedding_agreement(
    image_root: Path, samples: list[Sample], template: np.ndarray, onnx_path: Path, size: int, padding: float
) -> dict[str, float]:
    """Cosine between the model's embedding of FaceGate's crop (MTCNN + template) and of dlib's chip."""
    import dlib

    from service.pipeline.runtime import make_session

    session = make_session(onnx_path)
    cos = []
    for s in samples:
        rgb = decode_image((image_root / s.key).read_bytes(), 40_000_000)
        rect = dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        shape = dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in s.dlib])
        crops = np.stack(
            [align_face(rgb, s.mtcnn, template, (size, size)), dlib.get_face_chip(rgb, shape, size, padding)]
        )
        (emb,) = session.run(None, {"image": crops})
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        cos.append(float(emb[0] @ emb[1]))
    c = np.array(cos)
    return {"mean": round(float(c.mean()), 4), "p5": round(float(np.percentile(c, 5)), 4), "n": len(c)}


def fit_template(
    data_dir: Path,
    models_dir: Path,
    size: int = 150,
    padding: float = 0.25,
    seed: int = 0,
    onnx_path: Path | None = None,
    compare: dict[str, np.ndarray] | None = None,
) -> dict[str, object]:
    """Fit on half of the LFW images of people outside View 2; measure on the other half."""
    root = require(data_dir / "lfw" / "images", "FACEGATE_DATA", "LFW images")
    view2 = {k.split("/")[0] for k in read_lfw_pairs(data_dir / "lfw" / "pairs.txt").keys}
    keys = [k for name, ks in list_identities(root).items() if name not in view2 for k in ks]
    samples, counts = collect(root, keys, models_dir, size, padding)
    order = np.random.default_rng(seed).permutation(len(samples))
    fit_set = [samples[i] for i in order[: len(order) // 2]]
    held_out = [samples[i] for i in order[len(order) // 2 :]]
    template = trimmed_mean(np.stack([apply(s.to_chip, s.mtcnn) for s in fit_set]))
    shapes = [decode_image((root / s.key).read_bytes(), 40_000_000).shape for s in samples[:200]]
    centred = np.mean([s.mtcnn / [sh[1], sh[0]] for s, sh in zip(samples[:200], shapes, strict=True)], axis=0)
    result: dict[str, object] = {
        "template": np.round(template, 4).tolist(),
        "size": [size, size],
        "dlib_padding": padding,
        "source": "LFW deep-funneled images of the people who appear in no View 2 pair",
        "counts": {**counts, "used": len(samples), "fit": len(fit_set), "held_out": len(held_out)},
        "residuals_held_out": residuals(held_out, template, size),
        "residuals_fit": residuals(fit_set, template, size),
        "dlib_points_template": np.round(dlib_chip_points(size, padding), 4).tolist(),
        "warp_check_mean_abs_grey_levels": round(warp_check(root, samples[:100], size, padding), 3),
        "mean_mtcnn_landmarks_normalised": np.round(centred, 4).tolist(),
    }
    if onnx_path is not None:
        others = {"fitted": template, **(compare or {})}
        result["embedding_cosine_vs_dlib_chip_held_out"] = {
            name: embedding_agreement(root, held_out, np.asarray(t, np.float64), onnx_path, size, padding)
            for name, t in others.items()
        }
    return result
