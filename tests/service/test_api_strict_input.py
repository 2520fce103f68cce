"""Ambiguous input is refused, not guessed at: duplicate form fields and JSON keys, booleans where a
number belongs, and scope lists longer than the scopes there are (issue 12)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from PIL import Image

from service.auth import SCOPES
from tests.service.api_helpers import assert_problem, snapshot
from tests.service.conftest import jpeg

PHOTO = jpeg(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
B64 = base64.b64encode(PHOTO).decode()


def _multipart(client, route: str, fields: list[tuple[str, str]]):
    """A multipart body with ``fields`` in order, repeated names included."""
    data: dict[str, list[str]] = {}
    for name, value in fields:
        data.setdefault(name, []).append(value)
    return client.post(route, files={"image": ("p.jpg", PHOTO, "image/jpeg")}, data=data)


def _raw_json(client, route: str, text: str):
    return client.post(route, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("route", "fields", "repeated"),
    [
        ("/verify", [("person_id", "E1"), ("person_id", "E2")], "person_id"),
        ("/verify", [("person_id", "E1"), ("threshold", "0.9"), ("threshold", "0.1")], "threshold"),
        ("/enroll", [("name", "Alice"), ("name", "Bob")], "name"),
        ("/identify", [("top_k", "1"), ("top_k", "5")], "top_k"),
    ],
    ids=["verify-person_id", "verify-threshold", "enroll-name", "identify-top_k"],
)
def test_a_repeated_form_field_is_refused(client, route, fields, repeated) -> None:
    before = snapshot(client)
    body = assert_problem(_multipart(client, route, fields), 422, "invalid_request")
    assert repeated in body["detail"]
    assert snapshot(client) == before


def test_a_second_image_field_is_refused(client) -> None:
    files = [("image", ("a.jpg", PHOTO, "image/jpeg")), ("image", ("b.jpg", PHOTO, "image/jpeg"))]
    r = client.post("/identify", files=files)
    assert_problem(r, 422, "invalid_request")


@pytest.mark.parametrize(
    ("route", "text", "repeated"),
    [
        ("/verify", f'{{"image_base64": "{B64}", "person_id": "E1", "person_id": "E2"}}', "person_id"),
        ("/verify", f'{{"image_base64": "{B64}", "person_id": "E1", "threshold": 0.9, "threshold": 0.1}}', "threshold"),
        ("/enroll", f'{{"image_base64": "{B64}", "name": "Alice", "name": "Bob"}}', "name"),
        ("/identify", f'{{"image_base64": "{B64}", "top_k": 1, "top_k": 5}}', "top_k"),
        ("/identify", f'{{"image_base64": "{B64}", "image_base64": "{B64}"}}', "image_base64"),
    ],
    ids=["verify-person_id", "verify-threshold", "enroll-name", "identify-top_k", "identify-image"],
)  # fmt: skip
def test_a_repeated_json_key_is_refused(client, route, text, repeated) -> None:
    json.loads(text)  # valid JSON, which Python's parser would read as the last value
    before = snapshot(client)
    body = assert_problem(_raw_json(client, route, text), 422, "invalid_request")
    assert repeated in body["detail"]
    assert snapshot(client) == before


@pytest.mark.parametrize(
    ("route", "fields", "field"),
    [
        ("/identify", {"top_k": True}, "top_k"),
        ("/identify", {"top_k": False}, "top_k"),
        ("/verify", {"person_id": "E1", "threshold": True}, "threshold"),
    ],
    ids=["top_k-true", "top_k-false", "threshold-true"],
)
def test_a_boolean_is_not_a_number(client, route, fields, field) -> None:
    r = client.post(route, json={"image_base64": B64, **fields})
    body = assert_problem(r, 422, "invalid_request")
    assert body["errors"][0]["loc"] == [field] and "boolean" in body["detail"]


def test_numbers_as_form_text_are_still_read(client) -> None:
    """The same options arrive as form text: a number written out is a number, not refused."""
    r = _multipart(client, "/identify", [("top_k", "3")])
    assert_problem(r, 422, "no_face")  # got past the options to the photo (noise, no face)


def _keys(client) -> list[dict]:
    return client.get("/keys").json()


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "door", "name": "admin door", "scopes": ["verify"]}',
        '{"name": "door", "scopes": ["verify"], "scopes": ["admin"]}',
    ],
    ids=["name", "scopes"],
)
def test_a_repeated_key_in_a_keys_body_is_refused(client, text) -> None:
    before = _keys(client)
    body = assert_problem(_raw_json(client, "/keys", text), 422, "invalid_request")
    assert "more than once" in body["detail"]
    assert _keys(client) == before


@pytest.mark.parametrize(
    "scopes",
    [["verify"] * 10_000, ["verify", "verify"], ["verify", "enroll", "admin", "verify"]],
    ids=["ten-thousand", "twice", "four"],
)
def test_a_scope_list_longer_than_the_scopes_or_repeating_one_is_refused(client, scopes) -> None:
    before = _keys(client)
    assert_problem(client.post("/keys", json={"name": "door", "scopes": scopes}), 422, "validation_error")
    assert _keys(client) == before


def test_every_scope_once_is_accepted_and_the_schema_says_so(client) -> None:
    r = client.post("/keys", json={"name": "all", "scopes": sorted(SCOPES)})
    assert r.status_code == 201, r.text
    schema = client.get("/openapi.json").json()["components"]["schemas"]["KeyCreate"]["properties"]["scopes"]
    assert schema["maxItems"] == len(SCOPES) and schema["uniqueItems"] is True


def test_a_repeated_calibrate_form_field_is_refused(client) -> None:
    r = client.post(
        "/admin/calibrate",
        files={"archive": ("x.zip", b"PK\x05\x06" + bytes(18), "application/zip")},
        data={"target_far": ["0.01", "0.5"]},
    )
    body = assert_problem(r, 422, "invalid_request")
    assert "target_far" in body["detail"]
