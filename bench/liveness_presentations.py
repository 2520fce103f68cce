"""Synthesised presentations for the liveness evaluation (``bench/liveness.py``) and its tests.

Everything here is landmark-level and synthetic: the five landmarks of a frontal photo are lifted
onto a mean-face depth model (a live head) or onto a sheet (a print: flat, or bent on a cylinder),
moved along the poses of a challenge, projected by a pinhole camera, and jittered at the
detector's measured frame-to-frame noise. No real head turn was captured for these figures.

Coordinates: millimetres, x to the image's right, y down, z towards the camera, the nose tip at
the origin. The mean face (``DEPTH``) puts the eye centres 24 mm and the mouth corners 20 mm
behind the nose tip (rounded from the 3D face models used for head-pose estimation; a flatter
nose than most, so the figures err against the check). A head turns about a point 100 mm behind
the nose tip; a hand-held print about its own centre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.liveness.pose import STEPS

EYE_MM = 63.0  # mean distance between the eye centres
DEPTH = np.array([-24.0, -24.0, 0.0, -20.0, -20.0])  # z of each landmark, nose tip at 0
HEAD_PIVOT = 100.0  # mm behind the nose tip
FOCAL = 600.0  # px, a webcam of about 56 degrees across 640 px
CENTRE = np.array([320.0, 240.0])


def lift(landmarks: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(5, 3) points in mm: the photo's landmarks scaled to the mean inter-eye distance, centred
    on the nose tip, with the given depths."""
    p = np.asarray(landmarks, np.float64)
    scale = EYE_MM / float(np.linalg.norm(p[1] - p[0]))
    xy = (p - p[2]) * scale
    return np.c_[xy, depth]


def bent(points: np.ndarray, radius: float, vertical_axis: bool = True) -> np.ndarray:
    """A print (z = 0) bent on a cylinder of ``radius`` mm whose axis runs through the nose tip:
    the sheet curves away from the camera on both sides (a vertical axis: left and right)."""
    p = np.array(points, np.float64)
    u = p[:, 0] if vertical_axis else p[:, 1]
    u = np.clip(u, -radius * 0.99, radius * 0.99)
    along = radius * np.sin(u / radius)
    sag = radius * (1 - np.cos(u / radius))
    if vertical_axis:
        p[:, 0] = along
    else:
        p[:, 1] = along
    p[:, 2] = -sag
    return p


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Yaw > 0 moves a point in front of the pivot to the image's right (turning to one's own
    left); pitch > 0 moves it up (looking up); roll turns about the optical axis."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


@dataclass(frozen=True)
class Keyframe:
    yaw: float
    pitch: float
    roll: float
    distance: float  # mm from the camera to the nose tip's resting place


def project(points: np.ndarray, key: Keyframe, pivot: float, offset: np.ndarray) -> np.ndarray:
    """(5, 2) image points of ``points`` posed by ``key`` about a pivot ``pivot`` mm behind the
    origin, shifted by ``offset`` (mm, x and y)."""
    centre = np.array([0.0, 0.0, -pivot])
    moved = (points - centre) @ rotation(key.yaw, key.pitch, key.roll).T + centre
    x = moved[:, 0] + offset[0]
    y = moved[:, 1] + offset[1]
    z = key.distance - moved[:, 2]  # depth from the camera
    return CENTRE + FOCAL * np.c_[x / z, y / z]


def keyframes(steps: Sequence[str], rng: np.random.Generator, turn=(22.0, 40.0), nod=(15.0, 25.0)):
    """A neutral pose, then each step's pose with a return to neutral after it, as a person (or
    an attacker holding a print) would follow the challenge."""
    distance = float(rng.uniform(450, 650))

    def neutral() -> Keyframe:
        return Keyframe(*rng.normal(0, 2.0, 2), float(rng.normal(0, 2.0)), distance)

    out = [neutral()]
    for name in steps:
        s = STEPS[name]
        base = neutral()
        if s.measure == "yaw":
            yaw = float(rng.uniform(*turn)) * (1 if s.change > 0 else -1)
            out.append(Keyframe(yaw, base.pitch, base.roll, distance))
        elif s.measure == "pitch":
            pitch = float(rng.uniform(*nod)) * (1 if s.change < 0 else -1)
            out.append(Keyframe(base.yaw, pitch, base.roll, distance))
        else:
            out.append(Keyframe(base.yaw, base.pitch, base.roll, distance * float(rng.uniform(0.62, 0.78))))
        out.append(neutral())
    return out


def frames_between(keys: Sequence[Keyframe], per_segment: int) -> list[Keyframe]:
    """The keyframes with ``per_segment - 1`` evenly spaced poses between each pair."""
    out = [keys[0]]
    for a, b in zip(keys, keys[1:]):
        for i in range(1, per_segment + 1):
            t = i / per_segment
            out.append(
                Keyframe(
                    a.yaw + t * (b.yaw - a.yaw),
                    a.pitch + t * (b.pitch - a.pitch),
                    a.roll + t * (b.roll - a.roll),
                    a.distance + t * (b.distance - a.distance),
                )
            )
    return out


def jittered(seq: list[np.ndarray], sigma: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Each frame's landmarks plus Gaussian noise of ``sigma`` (per landmark, in inter-eye
    distances of that frame) on each coordinate."""
    out = []
    for p in seq:
        eye = float(np.linalg.norm(p[1] - p[0]))
        out.append(p + rng.normal(0, 1, p.shape) * (np.asarray(sigma)[:, None] * eye))
    return out


def sequence(
    points: np.ndarray,
    steps: Sequence[str],
    rng: np.random.Generator,
    *,
    pivot: float,
    sigma: np.ndarray,
    per_segment: int = 3,
    turn=(22.0, 40.0),
    nod=(15.0, 25.0),
) -> list[np.ndarray]:
    """Image landmarks of ``points`` following ``steps``, with a little sway and detector noise."""
    keys = frames_between(keyframes(steps, rng, turn, nod), per_segment)
    sway = np.cumsum(rng.normal(0, 1.5, (len(keys), 2)), axis=0)
    clean = [project(points, k, pivot, s) for k, s in zip(keys, sway)]
    return jittered(clean, sigma, rng)


# ---- the presentations the evaluation and the tests use ----


def bona_fide(photo: np.ndarray, steps, rng, sigma, nose_scale: float | None = None) -> list[np.ndarray]:
    """A live head: the photo's landmarks on the mean face (the nose's depth varied per person by
    0.75 to 1.25, or ``nose_scale``), turning as the challenge asks."""
    k = float(rng.uniform(0.75, 1.25)) if nose_scale is None else nose_scale
    depth = DEPTH.copy()
    depth[[0, 1, 3, 4]] *= k
    return sequence(lift(photo, depth), steps, rng, pivot=HEAD_PIVOT, sigma=sigma)


def repeated_still(photo: np.ndarray, n: int, rng, sigma) -> list[np.ndarray]:
    """One photo sent ``n`` times (recompressed or re-captured: detector noise only)."""
    flat = lift(photo, np.zeros(5))
    key = Keyframe(0.0, 0.0, 0.0, float(rng.uniform(450, 650)))
    return jittered([project(flat, key, 0.0, np.zeros(2))] * n, sigma, rng)


def tilted_print(photo: np.ndarray, steps, rng, sigma) -> list[np.ndarray]:
    """A flat print tilted and moved to follow the challenge, at random perspective tilts up to
    50 degrees about its centre."""
    flat = lift(photo, np.zeros(5))
    return sequence(flat, steps, rng, pivot=0.0, sigma=sigma, turn=(15.0, 50.0), nod=(15.0, 50.0))


def curved_print(photo: np.ndarray, steps, rng, sigma) -> list[np.ndarray]:
    """A print bent on a cylinder (radius 40 to 120 mm, axis vertical or horizontal), tilted to
    follow the challenge like ``tilted_print``."""
    points = bent(lift(photo, np.zeros(5)), float(rng.uniform(40, 120)), bool(rng.random() < 0.7))
    return sequence(points, steps, rng, pivot=0.0, sigma=sigma, turn=(15.0, 50.0), nod=(15.0, 50.0))
