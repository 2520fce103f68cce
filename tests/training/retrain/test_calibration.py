"""A published adapter version is calibrated by the service's own organisation calibration
(``service.org_calibration.calibrate``, what ``facegate calibrate`` runs) on the held-out
organisation photos, and carries it in the same format (card ``org_calibration``)."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from service.errors import FaceGateError
from service.model_card import OrgCalibration
from service.org_calibration import Embedded, LabelledSet, calibrate
from tests.training.retrain.test_adapter import OPTS, lfw_like, synthetic_org
from training.retrain.adapter import split, train_and_gate, transform
from training.retrain.calibration import org_calibration_field, organisation_calibration
from training.retrain.gate import OpenSetSplit


def test_the_held_out_photos_are_calibrated_exactly_as_facegate_calibrate_would() -> None:
    out = train_and_gate(synthetic_org(), lfw_like(), OPTS)
    held, f = out.split.held_out, transform(out.adapter)
    calibration, report = organisation_calibration(held, f, "1.0.0-ad.x", "1.0.0", 1e-3)
    # the same photos handed to the service's calibration as a labelled folder would be, named otherwise
    vecs = np.concatenate([f(held.gallery), f(held.probes), f(held.strangers)]).astype(np.float32)
    ids = np.concatenate([held.gallery_ids, held.probe_ids, held.stranger_ids]).astype(str)
    keys = [f"{i}/photo{n:05d}.jpg" for n, i in enumerate(ids)]
    order = np.argsort(np.array(keys), kind="stable")
    service = calibrate(
        Embedded([keys[i] for i in order], ids[order], vecs[order], []),
        LabelledSet({k: (i, b"") for k, i in zip(keys, ids)}, None),
        1e-3,
    )
    assert (calibration.a, calibration.b) == (service["calibration"].a, service["calibration"].b)
    assert calibration.far_table == service["calibration"].far_table
    assert report["far"] == service["report"]["far"] and report["frr"] == service["report"]["frr"]
    # every same-identity pair of the held-out photos is genuine, strangers with several photos too
    _, per_person = np.unique(ids, return_counts=True)
    assert report["genuine_pairs"] == calibration.genuine_pairs == sum(comb(int(n), 2) for n in per_person)
    assert report["impostor_pairs"] == comb(len(ids), 2) - report["genuine_pairs"]
    assert report["people"] == len(per_person) and report["photos_used"] == len(ids)
    assert "held-out identities" in calibration.data and report["pairs"].startswith(
        "all pairs of the held-out"
    )
    card_field = OrgCalibration.model_validate(org_calibration_field(report))  # the card's format
    assert card_field.version == "1.0.0-ad.x" and card_field.based_on == "1.0.0"
    assert card_field.threshold.similarity == pytest.approx(calibration.similarity_at_far(1e-3), abs=1e-6)


def test_too_few_held_out_photos_are_refused_as_facegate_calibrate_refuses() -> None:
    held = split(synthetic_org(people=6, photos=2), 0.5, 0).held_out
    assert isinstance(held, OpenSetSplit)
    with pytest.raises(FaceGateError, match="calibration needs at least"):
        organisation_calibration(held, lambda x: x, "v", "p", 1e-3)
