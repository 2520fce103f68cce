"""API keys: scopes, both headers, revocation, no key on any route but health."""

from __future__ import annotations

from tests.service.api_helpers import assert_problem


def test_routes_need_a_key(client):
    anon = {"Authorization": ""}
    for method, path in [
        ("post", "/enroll"),
        ("post", "/verify"),
        ("post", "/identify"),
        ("get", "/people"),
        ("get", "/people/x"),
        ("delete", "/people/x"),
        ("get", "/people/x/export"),
        ("get", "/metrics"),
        ("get", "/model"),
        ("get", "/keys"),
    ]:
        client.headers.pop("Authorization", None)
        r = getattr(client, method)(path)
        assert_problem(r, 401, "unauthorized")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    client.headers.update(anon)
    assert_problem(client.get("/people"), 401, "unauthorized")


def test_wrong_key_and_scheme(client):
    assert_problem(client.get("/people", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    assert_problem(client.get("/people", headers={"Authorization": "Basic abc"}), 401, "unauthorized")


def test_scopes_and_revocation(client):
    r = client.post("/keys", json={"name": "door", "scopes": ["verify"]})
    assert r.status_code == 201, r.text
    door = r.json()
    headers = {"Authorization": "", "X-API-Key": door["key"]}
    client.headers.pop("Authorization")
    assert client.get("/me", headers={"X-API-Key": door["key"]}).json()["scopes"] == ["verify"]
    assert_problem(client.get("/people", headers=headers), 403, "forbidden")
    assert_problem(client.post("/enroll", headers=headers, data={"name": "x"}), 403, "forbidden")
    # verify scope reaches /verify (and fails on the missing photo, not on auth)
    assert_problem(
        client.post("/verify", headers={"X-API-Key": door["key"]}, json={}), 422, "invalid_request"
    )
    admin = {
        "Authorization": client.app.state.facegate.settings.admin_key
        and f"Bearer {client.app.state.facegate.settings.admin_key}"
    }
    listed = client.get("/keys", headers=admin).json()
    assert door["key"] not in str(listed) and any(k["name"] == "door" for k in listed)
    assert client.delete(f"/keys/{door['id']}", headers=admin).status_code == 204
    assert_problem(client.get("/me", headers={"X-API-Key": door["key"]}), 401, "unauthorized")


def test_unknown_scope_is_refused(client):
    assert_problem(client.post("/keys", json={"name": "x", "scopes": ["root"]}), 422, "invalid_request")
