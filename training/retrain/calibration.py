"""Calibrating a retrained model on the organisation's own held-out pairs.

``a, b``: logistic regression on the held-out pairs (augmented-view and real genuine pairs,
impostor pairs), scored by the candidate. ``far_table``: estimated from the held-out impostor
pairs for the rates they support (at least ``min_tail`` pairs above the threshold). A few
thousand pairs cannot estimate the strict rates /identify needs (1e-4 to 1e-6); for those the
parent model's thresholds are kept, moved up by as much as the candidate's threshold at the
strictest estimated rate lies above the parent's at that rate (never moved down), so the table
stays monotone and errs on the strict side. The card's ``calibration.data`` says so.
"""

from __future__ import annotations

import numpy as np

from service.calibration import FAR_GRID, ImpostorTail, fit_logistic
from service.model_card import Calibration, FarPoint


def shifted_far_table(estimated: list[FarPoint], parent: Calibration) -> list[FarPoint]:
    rows = sorted(estimated, key=lambda p: -p.far)
    if not rows:
        return sorted(parent.far_table, key=lambda p: -p.far)
    floor = rows[-1]
    shift = max(0.0, floor.similarity - parent.similarity_at_far(floor.far))
    last = floor.similarity
    for p in sorted(parent.far_table, key=lambda p: -p.far):
        if p.far < floor.far:
            last = max(last, min(1.0, p.similarity + shift))
            rows.append(FarPoint(far=p.far, similarity=round(last, 6)))
    return rows


def candidate_calibration(
    scores: np.ndarray, same: np.ndarray, parent: Calibration, description: str, min_tail: int = 10
) -> Calibration:
    scores = np.asarray(scores, np.float64)
    a, b = fit_logistic(scores, same.astype(np.float64))
    tail = ImpostorTail()
    tail.add(scores[~same])
    estimated = tail.far_table(FAR_GRID, min_tail)
    down_to = f"{estimated[-1].far:g}" if estimated else "no rate"
    return Calibration(
        a=round(a, 6),
        b=round(b, 6),
        far_table=shifted_far_table(estimated, parent),
        data=(
            f"{description}: {int(same.sum())} genuine + {int((~same).sum())} impostor held-out pairs scored by "
            f"this model (logistic a, b); far_table estimated from those impostor pairs down to {down_to}, "
            f"stricter rates from the parent model {parent.data[:80]!r}... moved up by the shift at that rate"
        ),
        genuine_pairs=int(same.sum()),
        impostor_pairs=int((~same).sum()),
    )
