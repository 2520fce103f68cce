"""Is the landmarks' motion explained by a flat picture moved in front of the camera?

The image points of a planar object seen from two positions of a pinhole camera are related by
a homography, whatever the motion. A head that turns is not flat: the nose tip stands about
3 cm in front of the plane of the eyes and mouth corners, so its image moves against that plane
(parallax) and no homography maps one frame's five landmarks onto another's. ``residual`` fits a
homography (normalised DLT, least squares over the five points) from one frame's landmarks to
another's and measures the misfit, in inter-eye distances of the second frame. The sequence's
figure is the 90th percentile of that misfit over every pair of frames: a turning head shows it
between the frames of different poses, whichever they are, while a flat picture shows only the
detector's noise, which one pair's figure (or the largest) would let decide.

Five points leave two constraints after a homography's eight degrees of freedom, and four of the
points (eyes, mouth corners) are nearly coplanar on a face: the test rests almost entirely on
the nose. ``bench/liveness.py`` reports how much (README, "Liveness (experimental)").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Chosen by bench/liveness.py (default arguments) on its development presentations, the test ones
# being others: the 5th percentile of the bona fide sequences' figure, so that the planarity test
# alone refuses 5 % of them.
PLANAR_LIMIT = 0.0547
PERCENTILE = 90


def _normaliser(p: np.ndarray) -> np.ndarray:
    """Hartley's normalisation: centroid to the origin, mean distance sqrt(2)."""
    centre = p.mean(axis=0)
    spread = float(np.sqrt(((p - centre) ** 2).sum(axis=1)).mean())
    s = np.sqrt(2.0) / spread if spread > 1e-12 else 1.0
    return np.array([[s, 0, -s * centre[0]], [0, s, -s * centre[1]], [0, 0, 1.0]])


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography mapping ``src`` (n, 2) to ``dst`` (n, 2), n >= 4, least squares."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ts, td = _normaliser(src), _normaliser(dst)
    a = np.c_[src, np.ones(len(src))] @ ts.T
    b = np.c_[dst, np.ones(len(dst))] @ td.T
    rows = []
    for (x, y, w), (u, v, z) in zip(a, b):
        rows.append([0, 0, 0, -z * x, -z * y, -z * w, v * x, v * y, v * w])
        rows.append([z * x, z * y, z * w, 0, 0, 0, -u * x, -u * y, -u * w])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    h = vt[-1].reshape(3, 3)
    return np.linalg.inv(td) @ h @ ts


def transfer(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.c_[np.asarray(p, np.float64), np.ones(len(p))] @ h.T
    return q[:, :2] / q[:, 2:3]


def residual(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS misfit of the best homography from ``src`` to ``dst`` landmarks, in inter-eye distances
    of ``dst``."""
    dst = np.asarray(dst, np.float64)
    eye = float(np.linalg.norm(dst[1] - dst[0]))
    err = transfer(fit_homography(src, dst), src) - dst
    return float(np.sqrt((err**2).sum(axis=1).mean())) / max(eye, 1e-9)


def sequence_residual(
    landmarks: Sequence[np.ndarray], misfit: Callable[[np.ndarray, np.ndarray], float] = residual
) -> float:
    """The sequence's planarity figure: the 90th percentile of ``misfit`` over every pair of
    frames (0 for fewer than two frames)."""
    pts = [np.asarray(p, np.float64) for p in landmarks]
    pairs = [misfit(pts[i], pts[j]) for i in range(len(pts)) for j in range(i + 1, len(pts))]
    return float(np.percentile(pairs, PERCENTILE)) if pairs else 0.0
