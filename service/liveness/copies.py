"""Are two frames copies of each other? A still photo sent twice is: its decoded pixels are the
same. Two frames from a camera never are, even of a person holding still (sensor noise changes
every frame), so the test cannot refuse a live person. A still re-encoded between sends is not
caught here but by the steps and the planarity test (``bench/liveness.py``: repeated stills with
the detector's noise).
"""

from __future__ import annotations

import hashlib

import numpy as np


def fingerprint(rgb: np.ndarray) -> str:
    """The SHA-256 of the decoded pixels (and their shape)."""
    a = np.ascontiguousarray(rgb)
    return hashlib.sha256(str(a.shape).encode() + a.tobytes()).hexdigest()


def copied_pairs(prints: list[str]) -> list[tuple[int, int]]:
    """Pairs of frames (1 = first) with the same pixels."""
    return [
        (i + 1, j + 1)
        for i in range(len(prints))
        for j in range(i + 1, len(prints))
        if prints[i] == prints[j]
    ]
