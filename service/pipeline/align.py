"""Alignment: a similarity transform of the 5 landmarks onto a model card's template."""

from __future__ import annotations

import numpy as np
from PIL import Image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, reflection excluded. Returns a 2x3 matrix ``M`` with
    ``dst ~ M[:, :2] @ src + M[:, 2]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    cov = d_c.T @ s_c / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (s_c**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(
    rgb: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Warp ``rgb`` (H, W, 3 uint8) so that ``landmarks`` land on ``template``; returns (h, w, 3) uint8.

    ``size`` is (width, height). Pixels outside the photo are black.
    """
    m = similarity_transform(landmarks, template)
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    # PIL maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f), sampling at
    # pixel centres; shift by half a pixel on both sides so that the two conventions agree.
    a, b, c = inv[0]
    d, e, f = inv[1]
    c = c - 0.5 * (a + b) + 0.5
    f = f - 0.5 * (d + e) + 0.5
    img = Image.fromarray(np.ascontiguousarray(rgb))
    out = img.transform(size, Image.Transform.AFFINE, (a, b, c, d, e, f), resample=Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)
