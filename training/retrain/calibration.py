"""Calibrating a retrained model on the organisation's own held-out pairs.

``organisation_calibration`` (the adapter job's): the held-out organisation photos go through
``service.org_calibration.calibrate``, the code ``facegate calibrate`` and ``POST /admin/calibrate``
run, and come out in its format (card ``calibration`` + ``org_calibration``,
``calibration_report.json``). ``candidate_calibration`` (the older fine-tuning job's, below):

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
from service.org_calibration import Embedded, LabelledSet, calibrate
from training.retrain.gate import OpenSetSplit

ORG_PREFIX = "organisation's own photos (all pairs of a labelled folder): "
ORG_DATA = "organisation's own photos: the retraining job's held-out identities"


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


def organisation_calibration(
    held: OpenSetSplit, f, version: str, based_on: str, target_far: float
) -> tuple[Calibration, dict]:
    """The published version's calibration, through the service's own organisation calibration.

    The held-out organisation identities' photos (each enrolled reference, its genuine probes, every
    stranger photo), embedded by the candidate (``f``), are a labelled set ``<identity>/<photo>``
    as ``facegate calibrate`` reads it: ``service.org_calibration.calibrate`` pairs them (every
    same-identity pair genuine, every other pair impostor), fits ``a, b``, measures the false-accept
    table and the FAR/FRR at ``target_far`` (``FACEGATE_TARGET_FAR``). The result has the format
    ``facegate calibrate`` publishes: the card's ``calibration`` and ``org_calibration`` and the
    ``calibration_report.json`` report. Only held-out identities: the adapter was fitted on the
    others, whose scores would flatter it. Raises ``InvalidRequest`` (a ``FaceGateError``) when the
    pairs are too few, as ``facegate calibrate`` does.
    """
    vectors = np.concatenate([f(held.gallery), f(held.probes), f(held.strangers)]).astype(np.float32)
    ids = np.concatenate([held.gallery_ids, held.probe_ids, held.stranger_ids]).astype(str)
    roles = ["reference"] * len(held.gallery) + ["probe"] * len(held.probes) + ["photo"] * len(held.strangers)
    keys = [f"{ident}/{role}-{n}" for n, (ident, role) in enumerate(zip(ids.tolist(), roles))]
    order = np.argsort(np.array(keys), kind="stable")  # calibrate's own order: the photos sorted by key
    emb = Embedded([keys[i] for i in order], ids[order], vectors[order], [])
    photos = {k: (ident, b"") for k, ident in zip(keys, ids.tolist())}  # already embedded: no bytes
    result = calibrate(emb, LabelledSet(photos, None), target_far)
    source = f"all pairs of the held-out organisation identities' photos ({held.probe_kind}), retraining job"
    calibration: Calibration = result["calibration"]
    calibration = calibration.model_copy(
        update={"data": f"{ORG_DATA}, {calibration.data.removeprefix(ORG_PREFIX)}"}
    )
    report = {"version": version, "based_on": based_on, **result["report"], "pairs": source}
    return calibration, report


def org_calibration_field(report: dict) -> dict:
    """The card's ``org_calibration`` from the report, as ``service.org_calibration`` writes it."""
    return {k: v for k, v in report.items() if k not in ("thresholds", "skipped")}
