"""Bad input: every error is problem+json with a stable code, never a 5xx, never a change to stored data."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.service.api_helpers import assert_problem, post_photo, snapshot
from tests.service.conftest import jpeg


def noise_photo() -> bytes:
    rng = np.random.default_rng(1)
    smooth = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    return jpeg(Image.fromarray(smooth).resize((400, 300), Image.Resampling.BICUBIC))


@pytest.fixture
def seeded(client, lfw_people):
    """A client with one person enrolled, and the stored state before the bad requests."""
    photo = sorted(lfw_people[0].glob("*.jpg"))[0]
    r = post_photo(client, "/enroll", photo, name="Seed Person", person_id="seed", face_selection="largest")
    assert r.status_code == 201, r.text
    return client


def _bad_requests(lfw_people):
    face = sorted(lfw_people[1].glob("*.jpg"))[0].read_bytes()
    gif = io.BytesIO()
    Image.new("RGB", (50, 50)).save(gif, "GIF")
    png = io.BytesIO()
    Image.fromarray(np.zeros((300, 300, 3), np.uint8)).save(png, "PNG")
    truncated = face[: len(face) // 2]
    two = Image.new("RGB", (500, 250))
    two.paste(Image.open(io.BytesIO(face)), (0, 0))
    two.paste(Image.open(sorted(lfw_people[2].glob("*.jpg"))[0]), (250, 0))
    return [
        ("gif", "/enroll", gif.getvalue(), {"name": "x"}, 415, "unsupported_image"),
        ("text", "/verify", b"hello, not an image", {"person_id": "seed"}, 415, "unsupported_image"),
        ("truncated", "/enroll", truncated, {"name": "x"}, 422, "corrupt_image"),
        ("no face", "/enroll", noise_photo(), {"name": "x"}, 422, "no_face"),
        ("no face verify", "/verify", png.getvalue(), {"person_id": "seed"}, 422, "no_face"),
        ("no face identify", "/identify", png.getvalue(), {}, 422, "no_face"),
        ("two faces", "/enroll", jpeg(two), {"name": "x"}, 422, "multiple_faces"),
        ("duplicate id", "/enroll", face, {"name": "x", "person_id": "seed"}, 409, "already_enrolled"),
        ("unknown person", "/verify", face, {"person_id": "nobody"}, 404, "person_not_found"),
        ("bad person id", "/verify", face, {"person_id": "../etc"}, 422, "invalid_request"),
        ("missing name", "/enroll", face, {}, 422, "invalid_request"),
        ("bad top_k", "/identify", face, {"top_k": 0}, 422, "invalid_request"),
        ("bad selection", "/enroll", face, {"name": "x", "face_selection": "all"}, 422, "invalid_request"),
        ("unknown field", "/enroll", face, {"name": "x", "admin": "yes"}, 422, "invalid_request"),
    ]


def test_bad_photo_requests_leave_everything_unchanged(seeded, lfw_people):
    before = snapshot(seeded)
    for label, route, data, fields, status, code in _bad_requests(lfw_people):
        for as_json in (False, True):
            r = post_photo(seeded, route, data, as_json=as_json, **fields)
            assert r.status_code < 500, (label, r.text)
            assert_problem(r, status, code)
    assert snapshot(seeded) == before


def test_same_face_under_another_id_is_a_duplicate(seeded, lfw_people):
    before = snapshot(seeded)
    photo = sorted(lfw_people[0].glob("*.jpg"))[0]
    body = assert_problem(
        post_photo(seeded, "/enroll", photo, name="Again", person_id="other", face_selection="largest"),
        409,
        "duplicate_face",
    )
    assert body["person_id"] == "seed"
    assert snapshot(seeded) == before
    r = post_photo(
        seeded,
        "/enroll",
        photo,
        name="Again",
        person_id="other",
        face_selection="largest",
        allow_duplicate=True,
    )
    assert r.status_code == 201, r.text


def test_replace_swaps_the_reference(seeded, lfw_people):
    other = sorted(lfw_people[0].glob("*.jpg"))[1]
    r = post_photo(
        seeded, "/enroll", other, name="Seed Person", person_id="seed", replace=True, face_selection="largest"
    )
    assert r.status_code == 201 and r.json()["replaced"] is True
    assert seeded.get("/people", params={"q": "seed"}).json()["total"] == 1


def test_malformed_bodies(seeded):
    before = snapshot(seeded)
    cases = [
        seeded.post("/enroll", content=b"{not json", headers={"content-type": "application/json"}),
        seeded.post("/enroll", json=["a list"]),
        seeded.post("/enroll", json={"name": "x", "image_base64": "@@@not-base64@@@"}),
        seeded.post("/enroll", json={"name": "x"}),
        seeded.post("/enroll", content=b"raw bytes", headers={"content-type": "image/jpeg"}),
        seeded.post("/enroll", data={"name": "x"}, files={"other": ("a", b"x")}),
        seeded.post(
            "/enroll", content=b"--xx\r\nbroken", headers={"content-type": "multipart/form-data; boundary=xx"}
        ),
    ]
    for r in cases:
        assert_problem(r, 422, "invalid_request")
    assert snapshot(seeded) == before


def test_upload_limit_is_enforced_while_streaming(make_client, lfw_people):
    client = make_client(max_upload_bytes=50_000)
    big = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    data = jpeg(Image.fromarray(big), quality=95)
    assert len(data) > 50_000
    assert_problem(post_photo(client, "/enroll", data, name="x"), 413, "image_too_large")
    assert_problem(post_photo(client, "/enroll", data, as_json=True, name="x"), 413, "image_too_large")

    def chunks():
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = client.post("/enroll", content=chunks(), headers={"content-type": "image/jpeg"})
    assert_problem(r, 413, "image_too_large")


def test_pixel_limit(make_client, lfw_people):
    client = make_client(max_image_pixels=100_000)
    photo = sorted(lfw_people[0].glob("*.jpg"))[0]
    big = Image.open(photo).resize((1000, 1000))
    assert_problem(post_photo(client, "/enroll", jpeg(big), name="x"), 413, "image_too_large")


def test_quality_rejections_give_reason_and_value(make_client, lfw_people):
    strict = make_client(min_eye_distance=500, min_sharpness=10_000, max_yaw=0.0, min_detection_score=1.0)
    before = snapshot(strict)
    photo = sorted(lfw_people[3].glob("*.jpg"))[0]
    body = assert_problem(
        post_photo(strict, "/enroll", photo, name="x", face_selection="largest"), 422, "low_quality"
    )
    reasons = {p["reason"]: p for p in body["reasons"]}
    assert set(reasons) == {"face_too_small", "too_blurred", "turned_too_far", "low_confidence"}
    assert reasons["face_too_small"]["limit"] == 500 and 10 < reasons["face_too_small"]["value"] < 500
    assert "between the eyes" in reasons["face_too_small"]["message"]
    assert snapshot(strict) == before


def test_blurred_photo_is_rejected(client, lfw_people):
    from PIL import ImageFilter

    photo = Image.open(sorted(lfw_people[4].glob("*.jpg"))[0]).filter(ImageFilter.GaussianBlur(6))
    r = post_photo(client, "/enroll", jpeg(photo), name="x", face_selection="largest")
    if r.status_code == 422 and r.json()["code"] == "no_face":
        pytest.skip("the detector does not find this heavily blurred face")
    body = assert_problem(r, 422, "low_quality")
    assert any(p["reason"] == "too_blurred" for p in body["reasons"])


def test_unknown_route_and_method_are_problems(client):
    assert_problem(client.get("/nowhere"), 404, "not_found")
    assert_problem(client.get("/enroll"), 405, "method_not_allowed")
    assert_problem(client.get("/people", params={"limit": 0}), 422, "validation_error")
