"""Bursts on /verify and /identify: 2 to 5 frames of one moment, the best-quality face decides."""

from __future__ import annotations

import base64

import pytest
from PIL import Image, ImageFilter

from tests.service.api_helpers import assert_problem
from tests.service.conftest import jpeg
from tests.service.console_browser import face_free_image

pytestmark = pytest.mark.lfw


def _frames(client, route: str, frames: list[bytes], *, as_json: bool = False, **fields):
    names = ["image", *(f"image_{i}" for i in range(2, len(frames) + 1))]
    if as_json:
        body = {f"{n}_base64": base64.b64encode(f).decode() for n, f in zip(names, frames)}
        return client.post(route, json={**body, **fields})
    files = {n: (f"{n}.jpg", f, "image/jpeg") for n, f in zip(names, frames)}
    return client.post(route, files=files, data={k: str(v) for k, v in fields.items()})


@pytest.fixture
def enrolled(client, lfw_people):
    photos = sorted(lfw_people[0].glob("*.jpg"))
    files = {"image": ("a.jpg", photos[0].read_bytes(), "image/jpeg")}
    r = client.post("/enroll", files=files, data={"name": "A", "person_id": "a", "face_selection": "largest"})
    assert r.status_code == 201, r.text
    sharp = Image.open(photos[1]).convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    return client, jpeg(blurred), jpeg(sharp)


def test_verify_burst_takes_the_best_quality_frame(enrolled):
    client, blurred, sharp = enrolled
    single = _frames(client, "/verify", [blurred], person_id="a").json()
    assert single["frames"] == 1 and single["frame"] == 1
    for as_json in (False, True):
        r = _frames(client, "/verify", [blurred, sharp, blurred], as_json=as_json, person_id="a")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["frames"] == 3 and body["frame"] == 2, body
        assert body["match"] is True and body["score"] >= single["score"]
    last = _frames(client, "/verify", [blurred, blurred, blurred, blurred, sharp], person_id="a").json()
    assert last["frames"] == 5 and last["frame"] == 5


def test_frames_without_a_face_are_passed_over(enrolled):
    client, _, sharp = enrolled
    body = _frames(client, "/verify", [face_free_image(1), sharp], person_id="a").json()
    assert body["frame"] == 2 and body["match"] is True and body["faces_found"] == 1
    none = _frames(client, "/verify", [face_free_image(1), face_free_image(2)], person_id="a")
    assert assert_problem(none, 422, "no_face")["frames"] == 2


def test_identify_burst(enrolled):
    client, blurred, sharp = enrolled
    body = _frames(client, "/identify", [blurred, sharp]).json()
    assert body["frames"] == 2 and body["frame"] == 2
    assert body["result"] == "match" and body["person"]["person_id"] == "a"
    assert _frames(client, "/identify", [sharp]).json()["frames"] == 1


def test_burst_limits(enrolled):
    client, blurred, sharp = enrolled
    six = {f"image{'' if i == 1 else f'_{i}'}_base64": base64.b64encode(sharp).decode() for i in range(1, 7)}
    assert_problem(client.post("/verify", json={**six, "person_id": "a"}), 422, "invalid_request")
    files = {f"image{'' if i == 1 else f'_{i}'}": ("f.jpg", sharp, "image/jpeg") for i in range(1, 7)}
    assert_problem(client.post("/verify", files=files, data={"person_id": "a"}), 422, "invalid_request")
    refused = _frames(client, "/verify", [blurred, sharp], person_id="a", face_index=0)
    assert "single photo" in assert_problem(refused, 422, "invalid_request")["detail"]
    assert_problem(_frames(client, "/identify", [sharp, b"not a photo"]), 415, "unsupported_image")
