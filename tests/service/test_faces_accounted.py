"""Every face of a photo is accounted for: faces_found, faces in a documented order, face_index.

A two-face photo (the enrolled person small on the right, a stranger larger on the left) used to be
verified against the larger face only, answering "no match" with no word of the second face.
"""

from __future__ import annotations

import pytest

from tests.service.api_helpers import assert_problem, lfw_photo, post_photo, two_face_scene
from tests.service.conftest import jpeg

pytestmark = pytest.mark.lfw


@pytest.fixture
def scene(make_client, lfw_people):
    """A client with person A enrolled, and a photo of a stranger (large, left) beside A (small, right)."""
    client = make_client()
    a, stranger = lfw_people[0], lfw_people[1]
    return client, two_face_scene(client, a, stranger), a


def _ordered(faces: list[dict]) -> bool:
    def key(f):
        x1, y1, x2, y2 = f["box"]
        return (-round((x2 - x1) * (y2 - y1), 1), x1, y1)

    return [key(f) for f in faces] == sorted(key(f) for f in faces)


def test_verify_names_every_face_and_checks_the_chosen_one(scene):
    client, two, _ = scene
    default = post_photo(client, "/verify", two, person_id="a")
    assert default.status_code == 200, default.text
    body = default.json()
    assert body["faces_found"] == 2 and len(body["faces"]) == 2 and _ordered(body["faces"])
    assert body["face_index"] == 0 and body["face"] == body["faces"][0]
    assert body["faces"][0]["box"][0] < 250 <= body["faces"][1]["box"][0]  # the larger, left face first
    assert body["match"] is False  # the stranger's face

    chosen = post_photo(client, "/verify", two, person_id="a", face_index=1).json()
    assert chosen["face_index"] == 1 and chosen["face"] == chosen["faces"][1] == body["faces"][1]
    assert chosen["match"] is True, chosen
    as_json = post_photo(client, "/verify", two, as_json=True, person_id="a", face_index=1).json()
    assert as_json["match"] is True and as_json["face_index"] == 1


def test_identify_accounts_for_unchecked_faces_and_takes_face_index(scene):
    client, two, _ = scene
    body = post_photo(client, "/identify", two).json()
    assert (
        body["faces_found"] == 2 and body["face_index"] == 0 and _ordered([f["face"] for f in body["faces"]])
    )
    assert [f["face_index"] for f in body["faces"]] == [0, 1]
    assert body["faces"][0]["result"] == body["result"] == "unknown"
    assert body["faces"][1]["result"] == "not_checked" and body["faces"][1]["candidates"] == []

    chosen = post_photo(client, "/identify", two, face_index=1).json()
    assert chosen["face_index"] == 1 and chosen["result"] == "match" and chosen["person"]["person_id"] == "a"
    assert chosen["faces"][0]["result"] == "not_checked" and chosen["face"] == chosen["faces"][1]["face"]

    every = post_photo(client, "/identify", two, face_selection="all").json()
    assert [f["result"] for f in every["faces"]] == ["unknown", "match"]


def test_enroll_the_chosen_face_of_several(scene, lfw_people):
    client, two, a = scene
    assert_problem(post_photo(client, "/enroll", two, name="B"), 422, "multiple_faces")
    r = post_photo(client, "/enroll", two, name="A again", person_id="a2", face_index=1, allow_duplicate=True)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["faces_found"] == 2 and body["face_index"] == 1 and body["face"] == body["faces"][1]
    probe = jpeg(lfw_photo(a, 2))
    assert post_photo(client, "/verify", probe, person_id="a2").json()["match"] is True


def test_face_index_past_the_last_face_is_refused(scene):
    client, two, _ = scene
    for route, fields in (("/verify", {"person_id": "a"}), ("/identify", {}), ("/enroll", {"name": "x"})):
        p = assert_problem(
            post_photo(client, route, two, face_index=2, **fields), 422, "face_index_out_of_range"
        )
        assert p["faces_found"] == 2 and len(p["faces"]) == 2
    assert_problem(post_photo(client, "/verify", two, person_id="a", face_index=-1), 422, "invalid_request")


def test_equal_faces_are_ordered_left_to_right_then_top_to_bottom():
    import numpy as np

    from service.pipeline.face import Face
    from service.pipeline.pipeline import face_order

    def face(x: float, y: float, side: float) -> Face:
        return Face(box=(x, y, x + side, y + side), score=0.99, landmarks=np.zeros((5, 2), np.float32))

    faces = [face(300, 0, 50), face(0, 200, 50), face(0, 100, 50), face(500, 500, 80), face(100, 0, 50)]
    ordered = [f.box[:2] for f in face_order(faces)]
    assert ordered == [(500, 500), (0, 100), (0, 200), (100, 0), (300, 0)]
