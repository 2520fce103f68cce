"""The landmark-level liveness decision: were the steps reached in order, and is the motion
not that of a flat picture? Used by the service (``service.liveness.check``) on detected
landmarks and by ``bench/liveness.py`` on synthesised ones, so both judge alike."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.liveness.planarity import PLANAR_LIMIT, sequence_residual
from service.liveness.pose import pose_of, step


@dataclass(frozen=True)
class StepResult:
    step: str
    passed: bool
    measured: float  # how far the measure moved (the best seen when the step was not reached)
    frame: int | None  # the frame (1 = first) where the step was reached


@dataclass(frozen=True)
class Judgement:
    steps: list[StepResult]
    residual: float
    planar_limit: float
    reasons: list[dict] = field(default_factory=list)

    @property
    def steps_passed(self) -> bool:
        return all(s.passed for s in self.steps)

    @property
    def planar(self) -> bool:
        return self.residual < self.planar_limit

    @property
    def live(self) -> bool:
        return self.steps_passed and not self.planar


def judge(
    landmarks: Sequence[np.ndarray], steps: Sequence[str], planar_limit: float = PLANAR_LIMIT
) -> Judgement:
    """Judge frames' (5, 2) landmarks (in their order) against the challenge ``steps``.

    The first frame is the starting pose. Each step must be reached in a frame after the one
    where the previous step was reached."""
    poses = [pose_of(p) for p in landmarks]
    results: list[StepResult] = []
    reasons: list[dict] = []
    after = 0
    for name in steps:
        s = step(name)
        best: float | None = None
        reached: int | None = None
        for j in range(after + 1, len(poses)):
            moved = s.moved(poses[0], poses[j])
            if best is None or (moved > best if s.change > 0 else moved < best):
                best = moved
            if s.reached(poses[0], poses[j]):
                reached = j
                best = moved
                break
        measured = round(float(best if best is not None else (1.0 if s.measure == "size" else 0.0)), 4)
        results.append(
            StepResult(name, reached is not None, measured, None if reached is None else reached + 1)
        )
        if reached is None:
            reasons.append(
                {
                    "reason": "step_not_reached",
                    "step": name,
                    "message": f"the step '{name}' was not reached in order: {s.measure} moved "
                    f"{measured:g}, {s.change:g} needed",
                }
            )
        else:
            after = reached
    residual = sequence_residual(landmarks)
    if residual < planar_limit:
        reasons.append(
            {
                "reason": "flat_motion",
                "message": f"the face moved like a flat picture: landmark misfit to a plane {residual:.4f} "
                f"of the eye distance, {planar_limit:g} needed",
                "value": round(residual, 4),
                "limit": planar_limit,
            }
        )
    return Judgement(results, residual, planar_limit, reasons)
