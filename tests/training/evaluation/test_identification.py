"""Open-set identification: the protocol's split and its figures at the service's own threshold."""

from __future__ import annotations

import numpy as np

from service.decisions import identify_threshold
from service.model_card import Calibration, FarPoint
from training.evaluation.identification import identification_report, open_set_protocol

CAL = Calibration(
    a=10.0, b=-5.0, far_table=[FarPoint(far=1e-2, similarity=0.5), FarPoint(far=1e-4, similarity=0.8)]
)


def test_protocol_enrols_one_photo_per_person_and_keeps_singletons_as_strangers() -> None:
    keys = ["a/2", "a/1", "a/3", "b/1", "c/1", "c/2"]
    p = open_set_protocol(keys, [k[0] for k in keys])
    assert p.gallery == ["a/1", "c/1"] and p.probes == ["a/2", "a/3", "c/2"] and p.strangers == ["b/1"]


def test_report_counts_against_the_threshold_identify_uses() -> None:
    e = {
        "a/1": [1.0, 0.0, 0.0], "c/1": [0.0, 1.0, 0.0],
        "a/2": [0.99, 0.141, 0.0],  # right, above the threshold
        "a/3": [0.5, 0.0, 0.866],  # right person nearest, below the threshold: not identified
        "c/2": [0.9, 0.436, 0.0],  # nearest is a: wrong
        "b/1": [0.0, 0.95, 0.312],  # a stranger above the threshold: a false positive
    }  # fmt: skip
    emb = {k: np.asarray(v) / np.linalg.norm(v) for k, v in e.items()}
    keys = list(e)
    rep = identification_report(open_set_protocol(keys, [k[0] for k in keys]), emb, CAL, target_fpir=0.01)
    t = identify_threshold(CAL, 0.01, 2).similarity  # f = 5e-3 per comparison
    assert rep["threshold_similarity"] == round(t, 6) and 0.5 < t < 0.8
    assert rep["rank1"] == round(2 / 3, 6) and rep["identification_rate"] == round(1 / 3, 6)
    assert rep["fpir"] == 1.0 and rep["gallery"] == 2 and rep["strangers"] == 1
