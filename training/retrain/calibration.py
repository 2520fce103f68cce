"""Calibrating a retrained model on the organisation's own held-out pairs.

``a, b``: logistic regression on the held-out pairs (augmented-view and real genuine pairs,
impostor pairs), scored by the candidate. ``far_table``: measured on the held-out impostor pairs for the rates they
support (``service.calibration.measured_far_table``: at least ``min_tail`` pairs above the
threshold). A few thousand pairs cannot measure the strict rates /identify needs (1e-4 to 1e-6):
the table stops where the data does and ``calibration.data`` says so; no threshold is taken from
the parent model, whose weights differ.
"""

from __future__ import annotations

import numpy as np

from service.calibration import FAR_GRID, ImpostorTail, fit_logistic, measured_far_table
from service.model_card import Calibration


def candidate_calibration(
    scores: np.ndarray, same: np.ndarray, description: str, min_tail: int = 10
) -> Calibration:
    scores = np.asarray(scores, np.float64)
    a, b = fit_logistic(scores, same.astype(np.float64))
    tail = ImpostorTail()
    tail.add(scores[~same])
    estimated, note = measured_far_table(tail, FAR_GRID, min_tail)
    if not estimated:
        raise ValueError(f"{description}: {note}")
    return Calibration(
        a=round(a, 6),
        b=round(b, 6),
        far_table=estimated,
        data=(
            f"{description}: {int(same.sum())} genuine + {int((~same).sum())} impostor held-out pairs scored by "
            f"this model (logistic a, b); {note}"
        ),
        genuine_pairs=int(same.sum()),
        impostor_pairs=int((~same).sum()),
    )
