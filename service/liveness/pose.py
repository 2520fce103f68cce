"""Head-pose measures from the detector's 5 landmarks, and the challenge steps that use them.

Landmarks are MTCNN's, in image pixels: 0 the eye on the image's left, 1 the eye on the image's
right, 2 the nose tip, 3 and 4 the mouth corners (``service.pipeline.face.Face``). Frames are as
the camera took them, not mirrored, so the person's left is the image's right.

- ``yaw``: where the nose tip projects on the line through the eyes, -1 at the image-left eye,
  +1 at the image-right eye, 0 midway. Turning to one's own left moves the nose tip towards the
  image's right: yaw grows.
- ``pitch``: where the nose tip projects on the line from the eyes' midpoint (0) to the mouth
  corners' midpoint (1). Looking up brings the nose tip towards the eyes: pitch falls.
- ``size``: the distance from the eyes' midpoint to the mouth's, plus half the inter-eye distance,
  in pixels; coming closer makes it grow (it shrinks less under a turn than either alone).

A step is reached when its measure has moved far enough from the first frame's (each person's
frontal pose differs: a long nose, a head held low), in the step's direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    yaw: float
    pitch: float
    size: float

    def measure(self, name: str) -> float:
        if name == "size":
            return self.size
        return self.yaw if name == "yaw" else self.pitch


def pose_of(landmarks: np.ndarray) -> Pose:
    """The pose measures of one face's (5, 2) landmarks."""
    p = np.asarray(landmarks, dtype=np.float64)
    left, right, nose = p[0], p[1], p[2]
    eyes = (left + right) / 2
    mouth = (p[3] + p[4]) / 2
    across, down = right - left, mouth - eyes
    a2, d2 = float(across @ across), float(down @ down)
    yaw = 2.0 * float((nose - left) @ across) / a2 - 1.0 if a2 > 1e-9 else 0.0
    pitch = float((nose - eyes) @ down) / d2 if d2 > 1e-9 else 0.0
    size = float(np.sqrt(d2) + np.sqrt(a2) / 2)
    return Pose(yaw=yaw, pitch=pitch, size=size)


@dataclass(frozen=True)
class Step:
    """A pose to reach: ``measure`` moved from the first frame's by ``change`` (a signed
    difference; for ``size`` a ratio, so 1.25 is a quarter larger)."""

    name: str
    measure: str
    change: float
    instruction: str

    def moved(self, start: Pose, now: Pose) -> float:
        """How far the measure has moved, signed so that reaching ``change`` passes."""
        if self.measure == "size":
            return now.size / start.size if start.size > 0 else 0.0
        return now.measure(self.measure) - start.measure(self.measure)

    def reached(self, start: Pose, now: Pose) -> bool:
        moved = self.moved(start, now)
        return moved >= self.change if self.change > 0 else moved <= self.change


# The changes a step asks for. On the mean face of bench/liveness_presentations.py a turn of about
# 22 degrees moves yaw by 0.3 and a nod of 15 degrees pitch by about 0.07 (less looking down than
# up); the bench's bona fide sequences turn 22 to 40 degrees and nod 15 to 25, and its development
# half refuses under 1 % of them on the steps (README, "Liveness (experimental)").
STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("turn_left", "yaw", 0.30, "Turn your head to your left"),
        Step("turn_right", "yaw", -0.30, "Turn your head to your right"),
        Step("look_up", "pitch", -0.07, "Look up"),
        Step("look_down", "pitch", 0.07, "Look down"),
        Step("come_closer", "size", 1.20, "Come closer to the camera"),
    )
}
ROTATIONS = ("turn_left", "turn_right", "look_up", "look_down")


def step(name: str) -> Step:
    try:
        return STEPS[name]
    except KeyError:
        raise ValueError(f"unknown liveness step {name!r}; valid: {', '.join(STEPS)}") from None
