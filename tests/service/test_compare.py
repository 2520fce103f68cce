"""POST /compare: two photos, nobody enrolled, nothing stored, its own scope, audited."""

from __future__ import annotations

import base64

import pytest
from PIL import Image
from sqlalchemy import select

from service.gallery.tables import AuditEvent
from tests.service.api_helpers import assert_problem, snapshot
from tests.service.conftest import jpeg

pytestmark = pytest.mark.lfw


def _photo(person, i: int) -> bytes:
    return sorted(person.glob("*.jpg"))[i].read_bytes()


def _compare(client, a: bytes, b: bytes, *, key: str | None = None, as_json: bool = False, **fields):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if as_json:
        body = {
            "image_a_base64": base64.b64encode(a).decode(),
            "image_b_base64": base64.b64encode(b).decode(),
        }
        return client.post("/compare", json={**body, **fields}, headers=headers)
    files = {"image_a": ("a.jpg", a, "image/jpeg"), "image_b": ("b.jpg", b, "image/jpeg")}
    return client.post("/compare", files=files, data={k: str(v) for k, v in fields.items()}, headers=headers)


def _key(client, *scopes: str) -> str:
    r = client.post("/keys", json={"name": "-".join(scopes), "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return r.json()["key"]


def test_same_and_different_people_with_a_compare_key(client, lfw_people):
    key = _key(client, "compare")
    before = snapshot(client)
    a0, a1, b0 = _photo(lfw_people[0], 0), _photo(lfw_people[0], 1), _photo(lfw_people[1], 0)
    same = _compare(client, a0, a1, key=key)
    assert same.status_code == 200, same.text
    body = same.json()
    assert set(body) >= {
        "match",
        "score",
        "similarity",
        "threshold",
        "threshold_basis",
        "model_version",
        "a",
        "b",
    }
    assert body["match"] is True and body["score"] >= body["threshold"] and body["threshold_basis"]
    assert body["a"]["faces_found"] >= 1 and body["a"]["face"] == body["a"]["faces"][body["a"]["face_index"]]
    other = _compare(client, a0, b0, key=key, as_json=True).json()
    assert other["match"] is False and other["score"] < other["threshold"]
    assert (
        other["threshold"]
        == body["threshold"]
        == client.app.state.facegate.recognizer._verify_threshold(None, _admin_caller()).score
    )  # /verify's threshold
    assert snapshot(client) == before  # nobody enrolled, nothing stored
    with client.app.state.facegate.engine.connect() as conn:
        rows = conn.execute(
            select(AuditEvent).where(AuditEvent.action == "compare").order_by(AuditEvent.id)
        ).all()
    assert [(r.result, r.key_name, r.person_id) for r in rows] == [
        ("match", "compare", None),
        ("no_match", "compare", None),
    ]
    assert rows[0].detail["faces_found"] == [body["a"]["faces_found"], body["b"]["faces_found"]]


def _admin_caller():
    from service.gallery.audit import Caller

    return Caller(None, "test", frozenset({"admin"}))


def test_the_compare_scope_is_its_own(client, lfw_people):
    a0, a1 = _photo(lfw_people[0], 0), _photo(lfw_people[0], 1)
    for scopes in (["verify"], ["enroll"], ["metrics"], ["verify", "enroll"]):
        assert_problem(_compare(client, a0, a1, key=_key(client, *scopes)), 403, "forbidden")
    compare_key = _key(client, "compare")
    files = {"image": ("a.jpg", a0, "image/jpeg")}
    headers = {"Authorization": f"Bearer {compare_key}"}
    assert_problem(
        client.post("/verify", files=files, data={"person_id": "x"}, headers=headers), 403, "forbidden"
    )
    assert_problem(client.post("/identify", files=files, headers=headers), 403, "forbidden")
    assert _compare(client, a0, a1).status_code == 200  # admin
    scopes = client.get("/openapi.json").json()["components"]["schemas"]["KeyCreate"]["properties"]["scopes"]
    assert "compare" in scopes["items"]["enum"] and scopes["maxItems"] == len(scopes["items"]["enum"])


def test_threshold_face_choice_and_bad_requests(client, lfw_people):
    key = _key(client, "compare")
    a0, a1 = _photo(lfw_people[0], 0), _photo(lfw_people[0], 1)
    assert_problem(_compare(client, a0, a1, key=key, threshold=0.01), 403, "threshold_not_allowed")
    two = Image.new("RGB", (440, 250))
    two.paste(Image.open(sorted(lfw_people[1].glob("*.jpg"))[1]), (0, 0))
    two.paste(Image.open(sorted(lfw_people[0].glob("*.jpg"))[1]).resize((190, 190)), (250, 30))
    larger = _compare(client, a0, jpeg(two), key=key).json()
    assert larger["b"]["faces_found"] == 2 and larger["b"]["face_index"] == 0 and larger["match"] is False
    chosen = _compare(client, a0, jpeg(two), key=key, face_index_b=1).json()
    assert chosen["b"]["face_index"] == 1 and chosen["match"] is True
    assert_problem(_compare(client, a0, jpeg(two), key=key, face_index_b=2), 422, "face_index_out_of_range")
    only_a = client.post(
        "/compare", files={"image_a": ("a.jpg", a0, "image/jpeg")}, headers={"Authorization": f"Bearer {key}"}
    )
    assert_problem(only_a, 422, "invalid_request")
    assert_problem(client.post("/compare", json={"image_a_base64": "eA=="}), 422, "invalid_request")
    assert_problem(_compare(client, a0, b"not a photo", key=key), 415, "unsupported_image")
