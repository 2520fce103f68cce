"""Honest 1:N thresholds past what the calibration measured (issue 14 item 5)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from service.decisions import identify_threshold, largest_supported_gallery, promised_fpir
from service.fpir_limits import PromisedFpirCollector, beyond, warn_at_startup
from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.index import FaceIndex
from service.model_card import Calibration, FarPoint, FittedTail
from tests.service.api_helpers import post_photo
from tests.service.storage_helpers import DIM, make_enrolment

CAL = Calibration(
    a=10.0, b=-5.0, far_table=[FarPoint(far=1e-2, similarity=0.5), FarPoint(far=1e-3, similarity=0.6)]
)


def test_within_the_table_the_target_is_promised():
    t = identify_threshold(CAL, target_fpir=0.01, gallery_size=10)  # 1e-3 per comparison: measured
    assert t.promised_fpir == 0.01 and "supports" not in t.basis
    assert largest_supported_gallery(CAL, 0.01) == 10


def test_past_the_table_the_basis_states_the_fpir_actually_promised():
    t = identify_threshold(CAL, target_fpir=0.01, gallery_size=1000)  # 1e-5: beyond the table
    assert t.similarity == pytest.approx(0.6)  # the strictest measured threshold
    assert t.promised_fpir == pytest.approx(1000 * 1e-3)
    assert "at most about 1, not 0.01" in t.basis
    t = identify_threshold(CAL, target_fpir=0.01, gallery_size=40)
    assert t.promised_fpir == pytest.approx(0.04) and "at most about 0.04, not 0.01" in t.basis
    assert promised_fpir(CAL, 0.01, 10**6) == 1.0  # a rate, never above 1


@pytest.fixture
def gallery(database_url):
    engine = make_engine(database_url)
    g = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(4)
    for i in range(15):
        e = make_enrolment(rng, f"p{i}")
        g.enroll(
            e.person_id, e.name, e.crop, e.meta, e.sha, e.vector, collections=["door"] if i < 3 else None
        )
    yield g
    engine.dispose()


def test_the_metric_and_the_startup_warning_name_the_collections_past_the_limit(gallery, caplog):
    assert beyond(CAL, 0.01, {"default": 12, "door": 3}) == {"default": pytest.approx(0.012)}
    with caplog.at_level(logging.WARNING, logger="service.fpir_limits"):
        found = warn_at_startup(CAL, 0.01, gallery)
    assert found == {"default": pytest.approx(0.012)}
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "more than 10 people" in warning and "default (12 people)" in warning and "door" not in warning

    families = {f.name: f for f in PromisedFpirCollector(lambda: (gallery, CAL), 0.01).collect()}
    promised = {s.labels["collection"]: s.value for s in families["facegate_identify_promised_fpir"].samples}
    assert promised == {"default": pytest.approx(0.012), "door": pytest.approx(0.01)}
    assert families["facegate_identify_target_fpir"].samples[0].value == 0.01


def test_identify_and_metrics_state_it_over_http(make_client, lfw_people, caplog):
    client = make_client()
    gallery = client.app.state.facegate.recognizer.gallery
    cal = client.app.state.facegate.recognizer.card.calibration
    fpir = 10 * cal.strictest_far  # a target the calibration supports up to 10 people
    rng = np.random.default_rng(5)
    for i in range(30):
        e = make_enrolment(rng, f"s{i}")
        v = rng.standard_normal(gallery.index.dim).astype(np.float32)
        gallery.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, v / np.linalg.norm(v))

    with caplog.at_level(logging.WARNING, logger="service.fpir_limits"):
        again = make_client(target_fpir=fpir)  # a restart with that target
    assert any("can be promised an FPIR of at most about" in r.getMessage() for r in caplog.records)
    photo = sorted(lfw_people[0].glob("*.jpg"))[0]
    body = post_photo(again, "/identify", photo, face_selection="largest").json()
    assert body["gallery_size"] == 30
    assert body["promised_fpir"] == pytest.approx(30 * cal.strictest_far)
    assert f"at most about {30 * cal.strictest_far:.3g}, not {fpir:g}" in body["threshold_basis"]
    metrics = again.get("/metrics").text
    assert 'facegate_identify_promised_fpir{collection="default"}' in metrics
    assert "facegate_identify_target_fpir" in metrics


def _with_tail(table: list[tuple[float, float]]) -> Calibration:
    rows = [FarPoint(far=f, similarity=s) for f, s in table]
    tail = FittedTail(
        threshold=0.55,
        far_at_threshold=1e-2,
        exceedances=5000,
        shape=-0.1,
        scale=0.02,
        ks_distance=0.01,
        table=rows,
        estimate=rows,
    )
    return CAL.model_copy(update={"far_tail": tail})


def test_a_fitted_tail_carries_the_promise_to_stricter_rates():
    cal = _with_tail([(1e-4, 0.65), (1e-5, 0.7), (1e-6, 0.75)])
    assert cal.strictest_measured_far == 1e-3 and cal.strictest_far == 1e-6
    t = identify_threshold(cal, target_fpir=0.01, gallery_size=1000)  # 1e-5: from the fitted tail
    assert t.similarity == pytest.approx(0.7) and t.promised_fpir == 0.01
    assert "fitted tail" in t.basis and "5,000 impostor pairs above similarity 0.550" in t.basis
    assert "at most about" not in t.basis
    t = identify_threshold(cal, target_fpir=0.01, gallery_size=10**5)  # 1e-7: past the fit too
    assert t.similarity == pytest.approx(0.75) and t.promised_fpir == pytest.approx(0.1)
    assert "supports: its threshold at 1e-06 is used" in t.basis
    assert largest_supported_gallery(cal, 0.01) == 10**4
    assert beyond(cal, 0.01, {"default": 10**4, "site": 10**5}) == {"site": pytest.approx(0.1)}


def test_a_fitted_threshold_is_never_looser_than_the_strictest_measured_one():
    cal = _with_tail([(1e-4, 0.55), (1e-5, 0.62)])  # the fit below the measured 0.6 at 1e-4
    assert [p.similarity for p in cal.thresholds()] == [0.5, 0.6, 0.6, 0.62]
    assert cal.similarity_at_far(1e-4) == pytest.approx(0.6)
    sims = [cal.similarity_at_far(f) for f in np.logspace(-1, -6, 40)]
    assert all(b >= a for a, b in zip(sims, sims[1:]))  # stricter rate, never a looser threshold


def test_a_card_with_a_fitted_tail_round_trips_through_json():
    cal = _with_tail([(1e-4, 0.65), (1e-5, 0.7)])
    again = Calibration.model_validate_json(cal.model_dump_json())
    assert again == cal and again.similarity_at_far(1e-5) == pytest.approx(0.7)
    assert Calibration.model_validate_json(CAL.model_dump_json()).far_tail is None
