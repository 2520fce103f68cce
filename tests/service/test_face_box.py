"""Choosing a face by its box (``face_box``: x1,y1,x2,y2, the form faces[].box has) on /verify,
/identify, /enroll and /compare: the detected face overlapping it most (IoU >= MIN_BOX_IOU), else
face_box_no_match; face_index and face_box together: face_choice_conflict.

The scene is test_faces_accounted's: a stranger large on the left, the enrolled A small on the right.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from service.errors import FaceBoxNoMatch, FaceChoiceConflict, FaceIndexOutOfRange
from service.pipeline.face import Face
from service.pipeline.face_choice import MIN_BOX_IOU, FaceChoice, iou
from tests.service.api_helpers import assert_problem, lfw_photo, post_photo, snapshot, two_face_scene
from tests.service.conftest import jpeg


def _face(x1: float, y1: float, x2: float, y2: float) -> Face:
    return Face(box=(x1, y1, x2, y2), score=0.99, landmarks=np.zeros((5, 2), np.float32))


# ---- the choice itself (no model needed) ----


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (-5, -5, 15, 15)) == pytest.approx(100 / 400)


def test_the_face_overlapping_the_box_most_is_chosen():
    faces = [_face(0, 0, 100, 100), _face(150, 20, 210, 80)]
    assert FaceChoice(box=(150, 20, 210, 80)).pick(faces) == 1
    assert FaceChoice(box=(135, 5, 225, 95)).pick(faces) == 1  # drawn 1.5x round it: IoU 0.44
    assert FaceChoice(box=(20, 0, 120, 100)).pick(faces) == 0  # shifted by a fifth
    assert FaceChoice(box=(0, 0, 210, 100)).pick(faces) == 0  # round both: the one it covers more
    assert FaceChoice().pick(faces) is None and FaceChoice(index=1).pick(faces) == 1


def test_a_box_no_face_overlaps_enough_is_refused():
    faces = [_face(0, 0, 100, 100)]
    loose = (-60, -60, 160, 160)  # 220 px round a 100 px face: IoU 0.21
    assert iou(loose, faces[0].box) < MIN_BOX_IOU
    with pytest.raises(FaceBoxNoMatch) as err:
        FaceChoice(box=loose).pick(faces)
    assert err.value.extra["best_iou"] == pytest.approx(0.207, abs=1e-3)
    assert err.value.extra["min_iou"] == MIN_BOX_IOU and err.value.extra["faces_found"] == 1
    with pytest.raises(FaceIndexOutOfRange):
        FaceChoice(index=1).pick(faces)


def test_both_ways_at_once_are_refused():
    with pytest.raises(FaceChoiceConflict):
        FaceChoice(index=0, box=(0, 0, 1, 1))


# ---- through the API ----


@pytest.fixture
def scene(make_client, lfw_people):
    client = make_client()
    a, stranger = lfw_people[0], lfw_people[1]
    two = two_face_scene(client, a, stranger)
    faces = post_photo(client, "/identify", two).json()["faces"]
    boxes = [f["face"]["box"] for f in faces]
    assert len(boxes) == 2 and boxes[1][0] >= 250  # A is faces[1]
    return client, two, a, boxes


def _text(box) -> str:
    return ",".join(f"{v:g}" for v in box)


def _loose(box, k: float = 1.3):
    """The box grown by ``k`` about its centre and moved a little, as a hand would draw it."""
    cx, cy = (box[0] + box[2]) / 2 + 4, (box[1] + box[3]) / 2 - 3
    w, h = (box[2] - box[0]) * k / 2, (box[3] - box[1]) * k / 2
    return [round(cx - w), round(cy - h), round(cx + w), round(cy + h)]


@pytest.mark.lfw
def test_verify_checks_the_face_in_the_box(scene):
    client, two, _, boxes = scene
    assert post_photo(client, "/verify", two, person_id="a").json()["match"] is False  # the stranger
    for box in (_text(boxes[1]), _text(_loose(boxes[1])), f"[{_text(boxes[1])}]"):
        body = post_photo(client, "/verify", two, person_id="a", face_box=box).json()
        assert body["face_index"] == 1 and body["face"]["box"] == boxes[1] and body["match"] is True, body
    as_json = post_photo(
        client, "/verify", two, as_json=True, person_id="a", face_box=_loose(boxes[1])
    ).json()
    assert as_json["face_index"] == 1 and as_json["match"] is True
    chosen_first = post_photo(client, "/verify", two, person_id="a", face_box=_text(boxes[0])).json()
    assert chosen_first["face_index"] == 0 and chosen_first["match"] is False


@pytest.mark.lfw
def test_identify_answers_for_the_face_in_the_box(scene):
    client, two, _, boxes = scene
    body = post_photo(client, "/identify", two, face_box=_text(_loose(boxes[1]))).json()
    assert body["face_index"] == 1 and body["result"] == "match" and body["person"]["person_id"] == "a"
    assert [f["result"] for f in body["faces"]] == ["not_checked", "match"]
    # face_box overrides face_selection as face_index does
    every = post_photo(client, "/identify", two, face_selection="all", face_box=_text(boxes[1])).json()
    assert every["face_index"] == 1 and [f["result"] for f in every["faces"]] == ["not_checked", "match"]


@pytest.mark.lfw
def test_enroll_the_face_in_the_box(scene, lfw_people):
    client, two, _, boxes = scene
    stranger = lfw_people[1]
    r = post_photo(client, "/enroll", two, name="Stranger", person_id="s", face_box=_text(boxes[0]))
    assert r.status_code == 201, r.text
    assert r.json()["face_index"] == 0 and r.json()["face"]["box"] == boxes[0]
    assert post_photo(client, "/verify", jpeg(lfw_photo(stranger, 2)), person_id="s").json()["match"] is True


@pytest.mark.lfw
def test_compare_the_faces_in_the_boxes(scene):
    client, two, a, boxes = scene
    single = jpeg(lfw_photo(a, 2))
    files = {"image_a": ("a.jpg", two, "image/jpeg"), "image_b": ("b.jpg", single, "image/jpeg")}
    r = client.post("/compare", files=files, data={"face_box_a": _text(boxes[1])})
    assert r.status_code == 200, r.text
    assert r.json()["match"] is True and (r.json()["a"]["face_index"], r.json()["b"]["face_index"]) == (1, 0)
    body = {
        "image_a_base64": base64.b64encode(two).decode(),
        "image_b_base64": base64.b64encode(single).decode(),
        "face_box_a": boxes[0],
    }
    r = client.post("/compare", json=body)
    assert r.status_code == 200 and r.json()["match"] is False and r.json()["a"]["face_index"] == 0
    conflict = client.post("/compare", json={**body, "face_index_b": 0, "face_box_b": [0, 0, 10, 10]})
    assert_problem(conflict, 422, "face_choice_conflict")


@pytest.mark.lfw
def test_a_box_where_no_face_is_refused_and_nothing_is_stored(scene):
    client, two, _, boxes = scene
    before = snapshot(client)
    empty = "300,0,430,25"  # above A's face, below nobody
    for route, fields in (("/verify", {"person_id": "a"}), ("/identify", {}), ("/enroll", {"name": "x"})):
        p = assert_problem(post_photo(client, route, two, face_box=empty, **fields), 422, "face_box_no_match")
        assert p["face_box"] == [300, 0, 430, 25] and p["best_iou"] < p["min_iou"] == MIN_BOX_IOU
        assert p["faces_found"] == 2 and [f["box"] for f in p["faces"]] == boxes
    assert snapshot(client) == before


@pytest.mark.lfw
def test_face_index_and_face_box_together_are_refused(scene):
    client, two, _, boxes = scene
    before = snapshot(client)
    for route, fields in (("/verify", {"person_id": "a"}), ("/identify", {}), ("/enroll", {"name": "x"})):
        for as_json in (False, True):
            r = post_photo(
                client, route, two, as_json=as_json, face_index=1, face_box=_text(boxes[1]), **fields
            )
            assert "face_index" in assert_problem(r, 422, "face_choice_conflict")["detail"]
    assert snapshot(client) == before


@pytest.mark.lfw
@pytest.mark.parametrize(
    "box", ["1,2,3", "1,2,3,4,5", "a,b,c,d", "10,10,5,20", "10,10,20,10", "nan,0,1,1", "0,0,1e9,1", ""]
)
def test_a_malformed_box_is_invalid_request(scene, box):
    client, two, _, _ = scene
    p = assert_problem(
        post_photo(client, "/verify", two, person_id="a", face_box=box), 422, "invalid_request"
    )
    assert "face_box" in p["detail"]


@pytest.mark.lfw
@pytest.mark.parametrize("box", [[True, 0, 10, 10], [0, 0, 10], "[0,0,10,10", {"x": 1}])
def test_a_malformed_json_box_is_invalid_request(scene, box):
    client, two, _, _ = scene
    r = post_photo(client, "/verify", two, as_json=True, person_id="a", face_box=box)
    assert "face_box" in assert_problem(r, 422, "invalid_request")["detail"]


@pytest.mark.lfw
def test_a_box_with_a_burst_is_refused(scene):
    client, two, _, boxes = scene
    files = {"image": ("1.jpg", two, "image/jpeg"), "image_2": ("2.jpg", two, "image/jpeg")}
    r = client.post("/verify", files=files, data={"person_id": "a", "face_box": _text(boxes[1])})
    assert "face_box" in assert_problem(r, 422, "invalid_request")["detail"]
