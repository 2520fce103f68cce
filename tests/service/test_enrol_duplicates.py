"""The duplicate check at enrolment is a 1:N search: it takes /identify's threshold for the gallery size.

Photos (LFW, chosen with bench/duplicates.py's service pass on the dlib model, which these tests
therefore run on): Alan Ball's two photos are 0.980 apart in cosine; Sean Hayes's photo is 0.940
from Alan Ball's first, above the 1:1 verify threshold (0.931 at FAR 1e-3) but below the 1:N one
at FPIR 1e-4 over a gallery of one (0.945).
"""

from __future__ import annotations

import pytest

from service.decisions import identify_threshold, verify_threshold
from service.model_card import load_card
from service.settings import DEFAULT_MODEL, Settings
from tests.service.api_helpers import assert_problem, post_photo

pytestmark = pytest.mark.lfw

ALAN = "Alan_Ball/Alan_Ball_0001.jpg"
ALAN_AGAIN = "Alan_Ball/Alan_Ball_0002.jpg"
STRANGER = "Sean_Hayes/Sean_Hayes_0002.jpg"  # a distinct person, close to ALAN
MODEL = "dlib"  # the model the photos were chosen on


def _enrol(client, lfw_dir, key: str, person_id: str, **fields):
    return post_photo(
        client,
        "/enroll",
        lfw_dir / "images" / key,
        name=person_id,
        person_id=person_id,
        face_selection="largest",
        **fields,
    )


def test_distinct_person_is_not_refused_where_the_1to1_threshold_would_refuse(make_client, lfw_dir):
    client = make_client(model=MODEL, target_fpir=1e-4)
    assert _enrol(client, lfw_dir, ALAN, "alan").status_code == 201
    one_to_one = post_photo(client, "/verify", lfw_dir / "images" / STRANGER, person_id="alan").json()
    assert one_to_one["match"], "the stranger must pass the 1:1 threshold for this test to mean anything"
    r = _enrol(client, lfw_dir, STRANGER, "sean")
    assert r.status_code == 201, r.text
    assert client.get("/people/sean").status_code == 200


def test_second_photo_of_an_enrolled_person_is_still_refused(make_client, lfw_dir):
    client = make_client(model=MODEL, target_fpir=1e-4)
    assert _enrol(client, lfw_dir, ALAN, "alan").status_code == 201
    assert _enrol(client, lfw_dir, STRANGER, "sean").status_code == 201
    body = assert_problem(_enrol(client, lfw_dir, ALAN_AGAIN, "alan-2", as_json=True), 409, "duplicate_face")
    assert body["person_id"] == "alan" and body["score"] >= body["threshold"]
    assert "gallery of 2" in body["threshold_basis"]
    assert client.get("/people/alan-2").status_code == 404
    r = _enrol(client, lfw_dir, ALAN_AGAIN, "alan-2", allow_duplicate=True)
    assert r.status_code == 201, r.text


def test_duplicate_threshold_is_the_identify_threshold_for_the_gallery(make_client, lfw_dir):
    client = make_client(model=MODEL)
    assert _enrol(client, lfw_dir, ALAN, "alan").status_code == 201
    identify = post_photo(client, "/identify", lfw_dir / "images" / ALAN_AGAIN).json()
    body = assert_problem(_enrol(client, lfw_dir, ALAN_AGAIN, "alan-2"), 409, "duplicate_face")
    assert body["threshold"] == pytest.approx(identify["threshold"], abs=1e-4)
    assert body["threshold_basis"] == identify["threshold_basis"]


def test_the_1n_threshold_tightens_as_the_gallery_grows():
    settings = Settings()
    cal = load_card(settings.models_dir / DEFAULT_MODEL).calibration
    one_to_one = verify_threshold(cal, settings.target_far, None).score
    scores = [identify_threshold(cal, settings.target_fpir, n).score for n in (1, 10, 100, 1000, 10_000)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    assert scores[1] == pytest.approx(one_to_one, abs=1e-3)  # FPIR 1 % over 10 people is f = 1e-3
    assert all(s > one_to_one for s in scores[2:])
