"""quality_filter on /enroll: none, low, medium (default), high; bad values are 422 problem+json."""

from __future__ import annotations

import dataclasses

import pytest

from service.pipeline.quality import QUALITY_FILTERS, QUALITY_LEVELS, limits_for, quality_levels
from service.settings import Settings
from tests.service.api_helpers import assert_problem, post_photo, snapshot

# 27.3 px between the eyes (bench/service_pass.py), sharp, frontal, detector score 1.0: only
# high's 30 px face-size limit refuses it.
SMALL_FACE = "Tom_Brady/Tom_Brady_0002.jpg"


def test_levels_are_ordered_from_lenient_to_strict():
    levels = [QUALITY_LEVELS[name] for name in QUALITY_FILTERS]
    for looser, stricter in zip(levels, levels[1:]):
        assert stricter.min_eye_distance >= looser.min_eye_distance
        assert stricter.min_sharpness >= looser.min_sharpness
        assert stricter.max_yaw <= looser.max_yaw
        assert stricter.min_detection_score >= looser.min_detection_score


def test_settings_are_the_medium_level_and_unknown_levels_list_the_valid_ones():
    s = Settings()
    medium = QUALITY_LEVELS["medium"]
    assert (s.min_eye_distance, s.min_sharpness, s.max_yaw, s.min_detection_score) == dataclasses.astuple(
        medium
    )
    custom = dataclasses.replace(medium, min_sharpness=99.0)
    assert limits_for(quality_levels(custom), "medium") == custom
    assert limits_for(quality_levels(custom), "high") == QUALITY_LEVELS["high"]
    with pytest.raises(ValueError, match="valid: none, low, medium, high"):
        limits_for(QUALITY_LEVELS, "ultra")


@pytest.mark.lfw
def test_a_photo_refused_at_high_is_accepted_at_medium_low_and_none(client, lfw_dir):
    photo = lfw_dir / "images" / SMALL_FACE
    before = snapshot(client)
    for as_json in (False, True):
        r = post_photo(
            client,
            "/enroll",
            photo,
            as_json=as_json,
            name="x",
            face_selection="largest",
            quality_filter="high",
        )
        body = assert_problem(r, 422, "low_quality")
        assert body["quality_filter"] == "high"
        assert [p["reason"] for p in body["reasons"]] == ["face_too_small"]
        assert body["reasons"][0]["limit"] == QUALITY_LEVELS["high"].min_eye_distance
    assert snapshot(client) == before
    for i, level in enumerate([None, "medium", "low", "none"]):
        fields = {} if level is None else {"quality_filter": level}
        r = post_photo(
            client,
            "/enroll",
            photo,
            as_json=bool(i % 2),
            name="Tom Brady",
            person_id=f"tom-{i}",
            face_selection="largest",
            allow_duplicate=True,
            **fields,
        )
        assert r.status_code == 201, (level, r.text)


@pytest.mark.lfw
def test_a_blurred_photo_is_refused_at_medium_and_accepted_at_none(client, lfw_people):
    from PIL import Image, ImageFilter

    from tests.service.conftest import jpeg

    photo = jpeg(Image.open(sorted(lfw_people[4].glob("*.jpg"))[0]).filter(ImageFilter.GaussianBlur(6)))
    r = post_photo(client, "/enroll", photo, name="x", face_selection="largest")
    if r.status_code == 422 and r.json()["code"] == "no_face":
        pytest.skip("the detector does not find this heavily blurred face")
    assert "too_blurred" in [p["reason"] for p in assert_problem(r, 422, "low_quality")["reasons"]]
    r = post_photo(client, "/enroll", photo, name="x", face_selection="largest", quality_filter="none")
    assert r.status_code == 201, r.text
    assert r.json()["quality"]["sharpness"] < QUALITY_LEVELS["medium"].min_sharpness


@pytest.mark.parametrize("value", ["ultra", "", "HIGH", "1"])
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_quality_filter_is_a_422_problem(client, value, as_json):
    before = snapshot(client)
    r = post_photo(client, "/enroll", b"not even a photo", as_json=as_json, name="x", quality_filter=value)
    body = assert_problem(r, 422, "invalid_request")
    assert any(e["loc"] == ["quality_filter"] for e in body["errors"]), body
    assert snapshot(client) == before


def test_quality_filter_is_in_the_openapi_schema(client):
    body = client.get("/openapi.json").json()["paths"]["/enroll"]["post"]["requestBody"]["content"]
    for ctype in ("multipart/form-data", "application/json"):
        field = body[ctype]["schema"]["properties"]["quality_filter"]
        assert field["enum"] == list(QUALITY_FILTERS) and field["default"] == "medium"
        assert "high" in field["description"]
