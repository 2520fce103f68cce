"""POST /liveness/check on image frames: a head turn rendered from an LFW photo passes and its
token verifies; a tilted print, copied frames, two faces and another person's face fail."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from service.gallery.tables import AuditEvent
from service.liveness.pose import pose_of
from tests.service import liveness_frames as lf
from tests.service.api_helpers import post_photo

pytestmark = pytest.mark.lfw


def _check(client, challenge_id: str, frames: list[bytes]):
    files = [("frames", (f"{i}.jpg", f, "image/jpeg")) for i, f in enumerate(frames)]
    return client.post("/liveness/check", data={"challenge_id": challenge_id}, files=files)


def _challenge(client) -> dict:
    r = client.post("/liveness/challenge")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def people(client, lfw_people):
    """Two people whose first photo is frontal: (photos, rgb, landmarks) each."""
    detector = client.app.state.facegate.recognizer.pipeline.detector
    out = []
    for person in lfw_people:
        photos = sorted(person.glob("*.jpg"))
        rgb = np.asarray(Image.open(photos[0]).convert("RGB"))
        faces = detector.detect(rgb)
        if len(faces) == 1 and abs(pose_of(faces[0].landmarks).yaw) < 0.1:
            out.append((photos, rgb, faces[0].landmarks.astype(np.float64)))
            if len(out) == 2:
                return client, out
    pytest.skip("fewer than two LFW people with a frontal first photo")


def test_a_live_head_turn_passes_and_its_token_verifies(people):
    client, [(photos, rgb, landmarks), _] = people
    r = post_photo(client, "/enroll", photos[1], name="A", person_id="a", face_selection="largest")
    assert r.status_code == 201, r.text
    c = _challenge(client)
    r = _check(client, c["challenge_id"], lf.head_turn(rgb, landmarks, c["steps"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["live"] is True, body
    assert [s["step"] for s in body["steps"]] == c["steps"] and all(s["passed"] for s in body["steps"])
    assert body["score"] >= 1 and body["reasons"] == [] and body["liveness_token"].startswith("lt_")
    assert body["token_expires_in"] == 60
    files = {"image": ("p.jpg", photos[2].read_bytes(), "image/jpeg")}
    v = client.post("/verify", files=files, data={"person_id": "a", "liveness_token": body["liveness_token"]})
    assert v.status_code == 200 and v.json()["match"] is True, v.text
    with client.app.state.facegate.sessions() as s:
        row = s.scalars(select(AuditEvent).where(AuditEvent.action == "liveness")).one()
    assert row.result == "live" and row.detail["token_issued"] is True
    assert "landmarks" not in str(row.detail) and row.detail["challenge_id"] == c["challenge_id"]


def test_a_tilted_print_fails(people):
    client, [(_, rgb, landmarks), _] = people
    c = _challenge(client)
    body = _check(client, c["challenge_id"], lf.tilted_print(rgb, landmarks, c["steps"])).json()
    assert body["live"] is False and body["liveness_token"] is None
    assert {"flat_motion", "step_not_reached"} & {r["reason"] for r in body["reasons"]}


def test_copied_frames_fail(people):
    client, [(_, rgb, landmarks), _] = people
    c = _challenge(client)
    frames = lf.head_turn(rgb, landmarks, c["steps"])
    body = _check(client, c["challenge_id"], [frames[0], *frames, frames[3]]).json()
    assert body["live"] is False
    copied = [r for r in body["reasons"] if r["reason"] == "frames_copied"]
    assert [r["frames"] for r in copied] == [[1, 2], [5, len(frames) + 2]]


def test_two_faces_or_another_persons_face_fail(people):
    client, [(_, rgb, landmarks), (_, other_rgb, other_landmarks)] = people
    c = _challenge(client)
    frames = lf.head_turn(rgb, landmarks, c["steps"])
    pair = np.concatenate([rgb, other_rgb], axis=1)
    body = _check(client, c["challenge_id"], [*frames, lf.jpeg(pair)]).json()
    assert body["live"] is False
    assert [(r["reason"], r["frame"]) for r in body["reasons"] if "frame" in r] == [
        ("multiple_faces", len(frames) + 1)
    ]
    c = _challenge(client)
    frames = lf.head_turn(rgb, landmarks, c["steps"])
    frames[-1] = lf.head_turn(other_rgb, other_landmarks, c["steps"])[-1]
    body = _check(client, c["challenge_id"], frames).json()
    assert body["live"] is False and "different_person" in {r["reason"] for r in body["reasons"]}
