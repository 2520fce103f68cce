"""Numpy building blocks of the MTCNN cascade: area resampling, box generation, regression, NMS.

Box arrays are float (N, >=4) with columns x1, y1, x2, y2 in facenet-pytorch's convention (the
MTCNN reference code's 1-based pixel indices: a box covers the 0-based pixel columns
``trunc(x1) - 1 .. trunc(x2) - 1``). Resampling is "area" (adaptive average pooling), exactly as
facenet-pytorch's ``interpolate(mode="area")``, computed from one integral image.
"""

from __future__ import annotations

import numpy as np

PNET_STRIDE = 2
PNET_CELL = 12


def integral_image(rgb: np.ndarray) -> np.ndarray:
    """(H+1, W+1, 3) cumulative sums of an (H, W, 3) uint8 image, zero first row and column.

    Channel-last, so that each corner gathered below fetches its three channels in one contiguous
    read; int32 while the image total fits, int64 beyond.
    """
    h, w, c = rgb.shape
    dtype = np.int32 if h * w * 255 < 2**31 else np.int64
    out = np.zeros((h + 1, w + 1, c), dtype=dtype)
    body = out[1:, 1:]
    body[...] = rgb
    np.cumsum(body, axis=1, out=body)
    np.cumsum(body, axis=0, out=body)
    return out


def _pool_edges(start: np.ndarray, length: np.ndarray, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-pooling bin edges: (N, out) starts and ends of ``out`` bins over ``length`` pixels."""
    i = np.arange(out, dtype=np.int64)
    length = length[:, None]
    lo = (i * length) // out
    hi = -((-(i + 1) * length) // out)  # ceil
    return start[:, None] + lo, start[:, None] + hi


def _mean_chw(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(..., h, w, 3) integer sums over (..., h, w) pixel counts -> float32 (..., 3, h, w) means.

    The sums are rounded to float32 before the division, exactly as ``astype(np.float32) / count``.
    """
    out = np.empty((*total.shape[:-3], total.shape[-1], *total.shape[-3:-1]), dtype=np.float32)
    np.divide(np.moveaxis(total, -1, -3), count[..., None, :, :], out=out, dtype=np.float32, casting="unsafe")
    return out


def area_resize(integral: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The whole image area-resampled to ``size`` = (height, width); float32 (3, h, w)."""
    rows, cols, _ = integral.shape
    r0, r1 = _pool_edges(np.zeros(1, np.int64), np.array([rows - 1]), size[0])
    c0, c1 = _pool_edges(np.zeros(1, np.int64), np.array([cols - 1]), size[1])
    band = np.take(integral, r1[0], axis=0) - np.take(integral, r0[0], axis=0)
    total = np.take(band, c1[0], axis=1) - np.take(band, c0[0], axis=1)
    count = ((r1 - r0)[0][:, None] * (c1 - c0)[0][None, :]).astype(np.float32)
    return _mean_chw(total, count)


def area_crops(integral: np.ndarray, regions: np.ndarray, size: int) -> np.ndarray:
    """Crop ``regions`` and area-resample each to ``size`` x ``size``; float32 (N, 3, size, size).

    ``regions`` is int (N, 4): x0, y0, x1, y1 in 0-based pixels, end exclusive. Parts outside the
    image count as black, as in the original MTCNN's zero padding. Each bin's sum is four corner
    reads of the integral image, gathered as whole pixels (3 channels) by flat index.
    """
    rows, cols, channels = integral.shape
    regions = np.asarray(regions, dtype=np.int64)
    r0, r1 = _pool_edges(regions[:, 1], regions[:, 3] - regions[:, 1], size)
    c0, c1 = _pool_edges(regions[:, 0], regions[:, 2] - regions[:, 0], size)
    count = np.maximum((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :], 1).astype(np.float32)
    r0, r1 = (np.clip(r, 0, rows - 1)[:, :, None] * cols for r in (r0, r1))
    c0, c1 = (np.clip(c, 0, cols - 1)[:, None, :] for c in (c0, c1))
    pixels = integral.reshape(rows * cols, channels)
    total = pixels.take(r1 + c1, axis=0)
    total -= pixels.take(r0 + c1, axis=0)
    total -= pixels.take(r1 + c0, axis=0)
    total += pixels.take(r0 + c0, axis=0)
    return _mean_chw(total, count)


def pyramid_scales(height: int, width: int, min_size: float, factor: float) -> list[float]:
    """Scales at which a ``min_size`` face becomes a 12-pixel PNet cell, down to a 12-pixel image."""
    scale = PNET_CELL / min_size
    side = min(height, width) * scale
    scales = []
    while side >= PNET_CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def generate_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """PNet output map (reg (4, h, w), prob (h, w)) -> (N, 9): x1, y1, x2, y2, score, 4 offsets."""
    rows, cols = np.nonzero(prob >= threshold)
    cells = np.stack([cols, rows], axis=1).astype(np.float32)
    s = np.float32(scale)
    q1 = np.floor((PNET_STRIDE * cells + 1) / s)
    q2 = np.floor((PNET_STRIDE * cells + PNET_CELL) / s)
    return np.concatenate([q1, q2, prob[rows, cols][:, None], reg[:, rows, cols].T], axis=1).astype(
        np.float32
    )


def regress(boxes: np.ndarray, offsets: np.ndarray, inclusive: bool) -> np.ndarray:
    """Shift box edges by ``offsets`` (N, 4) times the box size (``+ 1`` sizes when ``inclusive``)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + (1 if inclusive else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if inclusive else 0)
    out[:, :4] = boxes[:, :4] + offsets[:, :4] * np.stack([w, h, w, h], axis=1)
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of side max(w, h) around the same centre."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_regions(boxes: np.ndarray, clip_to: tuple[int, int] | None = None) -> np.ndarray:
    """int (N, 4) 0-based, end-exclusive pixel regions the next net sees for each box.

    With ``clip_to`` = (height, width) the regions are cut at the image border (facenet-pytorch's
    behaviour, which then stretches the crop); without, they may reach outside (zero padding).
    """
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    regions = np.stack([t[:, 0] - 1, t[:, 1] - 1, t[:, 2], t[:, 3]], axis=1)
    if clip_to is not None:
        height, width = clip_to
        regions[:, [0, 2]] = np.clip(regions[:, [0, 2]], 0, width)
        regions[:, [1, 3]] = np.clip(regions[:, [1, 3]], 0, height)
    return regions


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision's ``nms``: drop boxes whose IoU with a kept one exceeds ``threshold``.

    Sizes are ``x2 - x1``; equal scores keep the earlier box first (a stable sort). Returns the
    kept indices, highest score first.
    """
    return _greedy(boxes, np.argsort(-scores, kind="stable"), threshold, "union", 0.0)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """The reference code's last-stage NMS: overlap over the smaller box, sizes ``x2 - x1 + 1``.

    Equal scores keep the later box first, as its ascending argsort read from the end does.
    """
    return _greedy(boxes, np.argsort(scores, kind="stable")[::-1], threshold, "min", 1.0)


NMS_BLOCK = 256


def _greedy(boxes: np.ndarray, order: np.ndarray, threshold: float, mode: str, one: float) -> np.ndarray:
    """Greedy suppression over ``order``, in float32 like both reference implementations.

    Candidates are taken in blocks of ``NMS_BLOCK``: the overlaps of a block's survivors with every
    later box come from one vectorised computation (the same float32 operations per pair as one
    pair at a time), then the greedy pass over the block only reads them.
    """
    n = len(order)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    one32 = np.float32(one)
    zero32 = np.float32(0)
    x1, y1, x2, y2 = (boxes[order, k].astype(np.float32) for k in range(4))
    area = (x2 - x1 + one32) * (y2 - y1 + one32)
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    for start in range(0, n, NMS_BLOCK):
        rows = np.flatnonzero(alive[start : start + NMS_BLOCK]) + start
        if rows.size == 0:
            continue
        col = slice(start, n)
        w = np.minimum(x2[rows, None], x2[None, col]) - np.maximum(x1[rows, None], x1[None, col]) + one32
        h = np.minimum(y2[rows, None], y2[None, col]) - np.maximum(y1[rows, None], y1[None, col]) + one32
        inter = np.maximum(zero32, w) * np.maximum(zero32, h)
        if mode == "min":
            denom = np.minimum(area[rows, None], area[None, col])
        else:
            denom = area[rows, None] + area[None, col] - inter
        ratio = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        spared = ratio <= threshold
        for row, i in enumerate(rows.tolist()):
            if alive[i]:
                keep.append(i)
                alive[start:] &= spared[row]
    return order[np.asarray(keep, dtype=np.int64)]
