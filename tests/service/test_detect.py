"""FaceDetector: the shipped MTCNN ONNX files, input checks, and behaviour on LFW photos."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw

from service.pipeline import mtcnn_ops as ops
from service.pipeline.detect import FaceDetector
from service.pipeline.face import Face
from tests.conftest import data_dir

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
DATA = data_dir()
LFW = DATA / "lfw" / "images"
needs_models = pytest.mark.skipif(
    not (MODELS / "mtcnn" / "onet.onnx").is_file(), reason="models/mtcnn/*.onnx missing"
)
needs_lfw = pytest.mark.skipif(not LFW.is_dir(), reason=f"LFW images not found at {LFW} (set FACEGATE_DATA)")
pytestmark = needs_models


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(MODELS, intra_op_threads=1)


@pytest.fixture(scope="module")
def lfw_sample() -> list[np.ndarray]:
    """50 LFW photos picked by a seeded generator (needs LFW)."""
    if not LFW.is_dir():
        pytest.skip(f"LFW images not found at {LFW} (set FACEGATE_DATA)")
    paths = sorted(LFW.glob("*/*.jpg"))
    rng = np.random.default_rng(7)
    picked = [paths[i] for i in sorted(rng.choice(len(paths), 50, replace=False))]
    return [np.asarray(Image.open(p).convert("RGB")) for p in picked]


def largest(detector: FaceDetector, rgb: np.ndarray) -> Face:
    faces = detector.detect(rgb)
    assert faces, "no face found"
    return faces[0]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def slow_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, mode: str, one: float) -> list[int]:
    """The obvious O(n^2) greedy NMS, one pair at a time."""
    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        ok = True
        for j in kept:
            a, b = boxes[i], boxes[j]
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + one)
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + one)
            area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
            area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
            denom = min(area_a, area_b) if mode == "min" else area_a + area_b - w * h
            ok &= w * h / denom <= thr
        if ok:
            kept.append(i)
    return kept


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_matches_the_pairwise_loop(thr: float) -> None:
    rng = np.random.default_rng(11)
    xy = rng.uniform(0, 100, (60, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (60, 2)).astype(np.float32)], axis=1)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct: no ties to break
    assert list(ops.nms(boxes, scores, thr)) == slow_nms(boxes, scores, thr, "union", 0.0)
    assert list(ops.nms_min(boxes, scores, thr)) == slow_nms(boxes, scores, thr, "min", 1.0)
    assert len(ops.nms(boxes[:0], scores[:0], thr)) == 0


def greedy_one_at_a_time(
    boxes: np.ndarray, order: np.ndarray, thr: float, mode: str, one: float
) -> list[int]:
    """Greedy NMS as the reference codes write it: one kept box against the rest, in float32."""
    one32 = np.float32(one)
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float32) for k in range(4))
    area = (x2 - x1 + one32) * (y2 - y1 + one32)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        w = np.maximum(np.float32(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one32)
        h = np.maximum(np.float32(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one32)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        ratio = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        order = rest[ratio <= thr]
    return keep


@pytest.mark.parametrize("spread", [150.0, 2000.0])  # many suppressed / almost all kept
def test_nms_over_several_blocks_matches_the_one_at_a_time_loop(spread: float) -> None:
    """More boxes than one block, with ties, duplicates and empty boxes: the same kept list."""
    n = 3 * ops.NMS_BLOCK + 17
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, spread, (n, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + rng.uniform(-2, 60, (n, 2)).astype(np.float32)], axis=1)
    boxes[10:20] = boxes[0]  # exact duplicates
    scores = np.round(rng.uniform(0.6, 1.0, n), 2).astype(np.float32)  # many ties
    for thr in (0.5, 0.7):
        kept = list(ops.nms(boxes, scores, thr))
        assert kept == greedy_one_at_a_time(boxes, np.argsort(-scores, kind="stable"), thr, "union", 0.0)
        kept_min = list(ops.nms_min(boxes, scores, thr))
        assert kept_min == greedy_one_at_a_time(
            boxes, np.argsort(scores, kind="stable")[::-1], thr, "min", 1.0
        )
        assert ops.NMS_BLOCK < len(kept_min) or spread < 1000


def window_means(rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int, size: tuple[int, int]) -> np.ndarray:
    """Adaptive average pooling of one zero-padded window, summed pixel by pixel: float32 (3, h, w)."""
    pad = max(0, -x0, -y0, x1 - rgb.shape[1], y1 - rgb.shape[0])
    padded = np.pad(rgb.astype(np.int64), ((pad, pad), (pad, pad), (0, 0)))
    window = padded[y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    rows, cols = window.shape[:2]
    out = np.zeros((3, *size), np.float32)
    for i in range(size[0]):
        for j in range(size[1]):
            r0, r1 = i * rows // size[0], -(-(i + 1) * rows // size[0])
            c0, c1 = j * cols // size[1], -(-(j + 1) * cols // size[1])
            total = window[r0:r1, c0:c1].sum(axis=(0, 1)).astype(np.float32)
            out[:, i, j] = total / np.float32((r1 - r0) * (c1 - c0))
    return out


def test_area_crops_and_resize_equal_the_pixel_by_pixel_means() -> None:
    """Integral-image resampling equals explicit window sums bit for bit, crops past the border too."""
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    integral = ops.integral_image(rgb)
    for size in [(12, 12), (37, 45), (20, 61)]:
        assert np.array_equal(ops.area_resize(integral, size), window_means(rgb, 0, 0, 45, 37, size))
    regions = np.array([[3, 4, 30, 31], [-9, -5, 20, 24], [30, 20, 60, 50], [0, 0, 45, 37], [10, 10, 15, 13]])
    for size in (24, 48):
        crops = ops.area_crops(integral, regions, size)
        assert crops.shape == (len(regions), 3, size, size) and crops.dtype == np.float32
        assert crops.flags.c_contiguous
        for crop, (x0, y0, x1, y1) in zip(crops, regions, strict=True):
            assert np.array_equal(crop, window_means(rgb, x0, y0, x1, y1, (size, size)))


@pytest.mark.parametrize(
    ("name", "outputs"),
    [("pnet", ["reg", "prob"]), ("rnet", ["reg", "prob"]), ("onet", ["reg", "landmarks", "prob"])],
)
def test_onnx_files_load_with_expected_io(name: str, outputs: list[str]) -> None:
    sess = ort.InferenceSession(str(MODELS / "mtcnn" / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert sess.get_inputs()[0].type == "tensor(float)"
    assert [o.name for o in sess.get_outputs()] == outputs


def test_licence_and_provenance_are_shipped() -> None:
    folder = MODELS / "mtcnn"
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "Copyright (c) 2019 Timothy Esler" in (folder / "LICENSE").read_text()
    provenance = (folder / "PROVENANCE.md").read_text()
    assert "Zhang" in provenance and "facenet_pytorch-2.6.0" in provenance


def test_face_free_image_gives_no_face(detector: FaceDetector) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    gradient = np.stack([x / 640 * 255, y / 480 * 255, np.full_like(x, 128.0)], axis=-1)
    img = Image.fromarray(gradient.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = (int(v) for v in rng.integers(0, 440, 2))
        w, h = (int(v) for v in rng.integers(20, 150, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x0, y0, x0 + w, y0 + h], fill=colour)
    assert detector.detect(np.asarray(img)) == []
    assert detector.detect(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((5, 7, 3), np.uint8)) == []
    assert detector.detect(np.zeros((0, 7, 3), np.uint8)) == []


@pytest.mark.parametrize(
    "bad", [np.zeros((50, 50), np.uint8), np.zeros((50, 50, 4), np.uint8), np.zeros((50, 50, 3), np.float32)]
)
def test_rejects_arrays_that_are_not_rgb_uint8(detector: FaceDetector, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_face_size": 0},
        {"max_side": 8},
        {"thresholds": (0.6, 0.7)},
        {"thresholds": (0.6, 0.7, 1.5)},
        {"border": "x"},
    ],
)
def test_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        FaceDetector(MODELS, **kwargs)


def test_missing_models_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pnet.onnx"):
        FaceDetector(tmp_path)


@needs_lfw
def test_finds_a_face_with_ordered_landmarks_in_lfw_photos(
    detector: FaceDetector, lfw_sample: list[np.ndarray]
) -> None:
    for rgb in lfw_sample:
        faces = detector.detect(rgb)
        assert faces, "every sampled LFW photo has a face"
        areas = [f.area for f in faces]
        assert areas == sorted(areas, reverse=True)
        face = faces[0]
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= rgb.shape[1] and 0 <= y1 < y2 <= rgb.shape[0]
        # Deep-funneled LFW: the main face sits near the centre of the 250x250 photo.
        assert abs((x1 + x2) / 2 - 125) < 40 and abs((y1 + y2) / 2 - 125) < 40
        marks = face.landmarks
        assert marks.shape == (5, 2) and marks.dtype == np.float32
        assert np.all((marks[:, 0] >= x1) & (marks[:, 0] <= x2) & (marks[:, 1] >= y1) & (marks[:, 1] <= y2))
        left_eye, right_eye, nose, left_mouth, right_mouth = marks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
        assert 0.5 <= face.score <= 1.0


@needs_lfw
def test_mirrored_photo_mirrors_the_landmarks(detector: FaceDetector, lfw_sample: list[np.ndarray]) -> None:
    rgb = lfw_sample[0]
    face = largest(detector, rgb)
    mirrored = largest(detector, np.ascontiguousarray(rgb[:, ::-1]))
    expected = face.landmarks[[1, 0, 2, 4, 3]].copy()  # image-left and image-right swap
    expected[:, 0] = rgb.shape[1] - expected[:, 0]
    assert np.abs(mirrored.landmarks - expected).max() < 0.1 * face.eye_distance
    assert mirrored.landmarks[0, 0] < mirrored.landmarks[1, 0]


@needs_lfw
def test_upscaled_padded_photo_gives_original_pixel_coordinates(lfw_sample: list[np.ndarray]) -> None:
    detector = FaceDetector(MODELS, min_face_size=40, max_side=640, intra_op_threads=1)
    for rgb in lfw_sample[:5]:
        face = largest(detector, rgb)
        # 4x upscale of a small rotation, pasted at an offset into a 1400x1200 canvas: downscaled
        # to 640 for detection, answered in the canvas's pixels.
        factor, offset = 4, np.array([90.0, 150.0])
        turned = Image.fromarray(rgb).rotate(5, resample=Image.Resampling.BICUBIC)
        big = turned.resize((250 * factor, 250 * factor), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (1400, 1200), (90, 90, 90))
        canvas.paste(big, tuple(int(v) for v in offset))
        found = largest(detector, np.asarray(canvas))
        back = (found.landmarks - offset) / factor
        eyes = (back[0] + back[1]) / 2
        assert np.linalg.norm(eyes - (face.landmarks[0] + face.landmarks[1]) / 2) < 0.15 * face.eye_distance
        box = tuple((np.array(found.box) - np.tile(offset, 2)) / factor)
        assert iou(box, face.box) > 0.6
        assert found.width > 0.5 * factor * face.width


@needs_lfw
def test_min_face_size_is_honoured(lfw_sample: list[np.ndarray]) -> None:
    rgb = lfw_sample[1]
    face = largest(FaceDetector(MODELS, intra_op_threads=1), rgb)
    side = max(face.width, face.height)

    def check(limit: int, photo: np.ndarray, max_side: int, scale: float) -> None:
        found = FaceDetector(MODELS, min_face_size=limit, max_side=max_side, intra_op_threads=1).detect(photo)
        assert all(max(f.width, f.height) >= limit for f in found)
        target = tuple(v * scale for v in face.box)
        assert not any(iou(f.box, target) > 0.5 for f in found), "the face is smaller than the limit"

    check(int(side) + 10, rgb, 640, 1.0)
    # In original pixels also when the photo is downscaled first (1000x1000 -> 250 for detection).
    big = np.asarray(Image.fromarray(rgb).resize((1000, 1000), Image.Resampling.BICUBIC))
    assert iou(largest(FaceDetector(MODELS, max_side=250), big).box, tuple(4 * v for v in face.box)) > 0.6
    check(int(4 * side) + 40, big, 250, 4.0)
    # A reduced copy: found with a small limit, gone with a limit just above its size.
    scale = 100 / 250
    tiny = np.asarray(Image.fromarray(rgb).resize((100, 100), Image.Resampling.BICUBIC))
    found = largest(FaceDetector(MODELS, min_face_size=20, intra_op_threads=1), tiny)
    assert iou(found.box, tuple(scale * v for v in face.box)) > 0.5
    check(int(scale * side) + 8, tiny, 640, scale)


@needs_lfw
def test_concurrent_calls_match_sequential_ones(detector: FaceDetector, lfw_sample: list[np.ndarray]) -> None:
    photos = lfw_sample[:12]
    expected = [detector.detect(rgb) for rgb in photos]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(detector.detect, photos * 2))
    for want, have in zip(expected * 2, got, strict=True):
        assert [f.box for f in have] == [f.box for f in want]
        for a, b in zip(have, want, strict=True):
            np.testing.assert_array_equal(a.landmarks, b.landmarks)
