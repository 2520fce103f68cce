"""Inputs that used to reach a 500: deep JSON, out-of-range numbers (no photo needed)."""

from __future__ import annotations

import pytest

from tests.service.api_helpers import assert_problem


@pytest.mark.parametrize("route", ["/enroll", "/verify", "/identify"])
def test_deeply_nested_json_is_a_422(client, route):
    deep = '{"name": "x", "person_id": "a", "image_base64": ' + "[" * 5000 + "]" * 5000 + "}"
    r = client.post(route, content=deep, headers={"content-type": "application/json"})
    assert_problem(r, 422, "invalid_request")


@pytest.mark.parametrize("offset", ["9223372036854775808", str(10**30), "2147483648"])
def test_offsets_past_what_a_database_takes_are_refused(client, offset):
    assert_problem(client.get("/people", params={"offset": offset}), 422, "validation_error")


@pytest.mark.parametrize("key_id", ["9223372036854775808", "2147483648", "0"])
def test_key_ids_past_what_a_database_takes_are_refused(client, key_id):
    assert_problem(client.delete(f"/keys/{key_id}"), 422, "validation_error")
