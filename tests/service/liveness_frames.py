"""Image frames for the liveness API tests, made by warping one photo.

A live head turn is imitated by laying the photo on a head-shaped surface (an ellipsoid with a
nose, depths as on the mean face of ``bench/liveness_presentations.py``) and rendering it turned;
a print by one perspective warp of the whole photo (a flat picture tilted in front of the
camera). The detector then finds the landmarks in the rendered pixels itself.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bench import liveness_presentations as lp
from service.liveness.planarity import fit_homography


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (least squares) taking ``src`` onto ``dst``."""
    a = np.zeros((2 * len(src), 4))
    a[0::2] = np.c_[src[:, 0], -src[:, 1], np.ones(len(src)), np.zeros(len(src))]
    a[1::2] = np.c_[src[:, 1], src[:, 0], np.zeros(len(src)), np.ones(len(src))]
    (c, s, tx, ty), *_ = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)
    return np.array([[c, -s, tx], [s, c, ty]])


def _sample(rgb: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``rgb`` at (m, 2) positions (clamped to the border)."""
    h, w = rgb.shape[:2]
    x = np.clip(xy[:, 0], 0, w - 1.001)
    y = np.clip(xy[:, 1], 0, h - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = rgb.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).round().clip(0, 255).astype(np.uint8)


# The head: an ellipsoid (semi-axes in mm) with a bump for the nose, so that the eye centres lie
# 24 mm and the mouth corners 20 mm behind the nose tip, as on the mean face of
# bench/liveness_presentations.py. Outside the ellipsoid the photo is a plane at its back.
A, B, C = 75.0, 100.0, 85.0
NOSE = 11.0
BACK = C + NOSE  # the ellipsoid's centre, behind the nose tip
REFERENCE_MM = 500.0  # the distance at which the photo's pixels keep their size


def _depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    inside = np.clip(1 - (x / A) ** 2 - (y / B) ** 2, 0, None)
    return -BACK + C * np.sqrt(inside) + NOSE * np.exp(-(x**2 + (y + 4) ** 2) / (2 * 9.0**2))


def _forward(p: np.ndarray, nose: np.ndarray, mm: float, key: lp.Keyframe) -> np.ndarray:
    """Where the photo's pixels ``p`` land once the head is posed by ``key`` (pinhole camera)."""
    x, y = ((p - nose) * mm).T
    pts = np.c_[x, y, _depth(x, y)]
    pivot = np.array([0.0, 0.0, -lp.HEAD_PIVOT])
    moved = (pts - pivot) @ lp.rotation(key.yaw, key.pitch, key.roll).T + pivot
    scale = REFERENCE_MM / (key.distance - moved[:, 2])
    return nose + moved[:, :2] * scale[:, None] / mm


def render(rgb: np.ndarray, landmarks: np.ndarray, key: lp.Keyframe, iterations: int = 20) -> np.ndarray:
    """The photo's head posed by ``key``: each output pixel's source found by fixed-point
    iteration of the forward map (occlusion ignored: fine for the turns used here)."""
    h, w = rgb.shape[:2]
    nose = landmarks[2]
    mm = lp.EYE_MM / float(np.linalg.norm(landmarks[1] - landmarks[0]))
    ys, xs = np.mgrid[0:h, 0:w]
    q = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    p = q.copy()
    for _ in range(iterations):
        p = p + 0.8 * (q - _forward(p, nose, mm, key))
    return _sample(rgb, p).reshape(h, w, 3)


def _to_photo(seq: list[np.ndarray], landmarks: np.ndarray) -> list[np.ndarray]:
    """The projected sequence placed on the photo: the similarity taking its first frame onto
    the photo's landmarks, applied to every frame."""
    m = _similarity(seq[0][[0, 1, 3, 4]], landmarks[[0, 1, 3, 4]])
    return [p @ m[:, :2].T + m[:, 2] for p in seq]


def jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def head_turn(rgb: np.ndarray, landmarks: np.ndarray, steps, seed: int = 0) -> list[bytes]:
    """JPEG frames of the photo's head turning through ``steps`` (no added noise: the detector
    brings its own)."""
    rng = np.random.default_rng(seed)
    keys = lp.frames_between(lp.keyframes(steps, rng, turn=(28.0, 30.0), nod=(20.0, 22.0)), 2)
    return [jpeg(render(rgb, landmarks, k)) for k in keys]


def tilted_print(rgb: np.ndarray, landmarks: np.ndarray, steps, seed: int = 0) -> list[bytes]:
    """JPEG frames of the photo as a flat print tilted through ``steps`` (perspective warps)."""
    rng = np.random.default_rng(seed)
    flat = lp.lift(landmarks, np.zeros(5))
    keys = lp.frames_between(lp.keyframes(steps, rng, turn=(35.0, 40.0), nod=(30.0, 35.0)), 2)
    seq = _to_photo([lp.project(flat, k, 0.0, np.zeros(2)) for k in keys], landmarks)
    frames = []
    for t in seq:
        inv = np.linalg.inv(fit_homography(landmarks, t))  # a plane's points follow a homography
        ys, xs = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]]
        q = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)] @ inv.T
        frames.append(jpeg(_sample(rgb, q[:, :2] / q[:, 2:3]).reshape(rgb.shape)))
    return frames
