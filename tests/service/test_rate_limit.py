"""Rate limits through the HTTP app: per key (by scope) and per client address, 429 rate_limited
with Retry-After and the limit, a window that recovers, and Redis counts shared by two instances."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.api.main import create_app
from service.settings import Settings
from tests.service.api_helpers import assert_problem

REDIS_URL = "redis://127.0.0.1:6379/0"


def not_a_photo(client: TestClient, route: str, key: dict[str, str]):
    """A POST whose body is no photo: 422 unless refused before the body is read."""
    return client.post(route, content=b"{}", headers={**key, "Content-Type": "application/json"})


def new_key(client: TestClient, *scopes: str) -> tuple[int, dict[str, str]]:
    r = client.post("/keys", json={"name": "door", "scopes": list(scopes)})
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['key']}"}


def from_address(client: TestClient, host: str) -> TestClient:
    """A client of the same started app whose requests come from ``host``."""
    return TestClient(client.app, client=(host, 40000), raise_server_exceptions=False)


def assert_limited(response, limit: str, name: str, per: str) -> dict:
    body = assert_problem(response, 429, "rate_limited")
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60 and body["retry_after_s"] == seconds
    assert (body["limit"], body["limit_name"], body["per"]) == (limit, name, per)
    return body


def test_a_burst_gets_429_with_retry_after_and_the_limit(make_client) -> None:
    client = make_client(rate_limit_verify="3/minute")
    _, door = new_key(client, "verify")
    assert [client.get("/me", headers=door).status_code for _ in range(3)] == [200, 200, 200]
    assert_limited(client.get("/me", headers=door), "3 per 1 minute", "verify", "key")
    # /verify and /identify count with the rest, and a refused body is not read (no 422 for it)
    for route in ("/verify", "/identify"):
        refused = not_a_photo(client, route, door)
        assert_limited(refused, "3 per 1 minute", "verify", "key")
        assert refused.headers["Connection"] == "close"


def test_another_key_is_not_affected(make_client) -> None:
    client = make_client(rate_limit_verify="2/minute")
    _, first = new_key(client, "verify")
    _, second = new_key(client, "verify")
    for _ in range(2):
        assert client.get("/me", headers=first).status_code == 200
    assert_limited(client.get("/me", headers=first), "2 per 1 minute", "verify", "key")
    assert client.get("/me", headers=second).status_code == 200
    assert client.get("/people").status_code == 200  # the admin key has no limit by default


def test_requests_without_a_valid_key_are_limited_per_address(make_client) -> None:
    client = make_client(rate_limit_address="2/minute")
    anonymous = {"Authorization": ""}
    assert client.get("/readyz", headers=anonymous).status_code == 200
    assert_problem(client.get("/people", headers={"Authorization": "Bearer fg_wrong"}), 401, "unauthorized")
    assert_limited(client.get("/readyz", headers=anonymous), "2 per 1 minute", "address", "address")
    assert_limited(
        client.get("/people", headers={"Authorization": "Bearer fg_wrong"}),
        "2 per 1 minute",
        "address",
        "address",
    )
    other = from_address(client, "198.51.100.7")
    assert other.get("/readyz").status_code == 200
    assert client.get("/me").status_code == 200  # a valid key is counted as that key, not as the address
    assert all(client.get("/healthz", headers=anonymous).status_code == 200 for _ in range(5))


def test_limits_differ_per_scope(make_client) -> None:
    client = make_client(
        rate_limit_verify="2/minute", rate_limit_enroll="4/minute", rate_limit_admin="6/minute"
    )
    _, clerk = new_key(client, "enroll", "verify")  # the admin's first request
    for _ in range(2):
        assert client.get("/me", headers=clerk).status_code == 200
    assert_limited(client.get("/me", headers=clerk), "2 per 1 minute", "verify", "key")
    # the same key's enrolments have a limit of their own (a body that is not a photo: 422)
    for _ in range(4):
        assert not_a_photo(client, "/enroll", clerk).status_code == 422
    assert_limited(not_a_photo(client, "/enroll", clerk), "4 per 1 minute", "enroll", "key")
    for _ in range(5):
        assert client.get("/me").status_code == 200
    assert_limited(client.get("/me"), "6 per 1 minute", "admin", "key")


def test_requests_are_accepted_again_after_the_window(make_client) -> None:
    client = make_client(rate_limit_verify="2/second")
    _, door = new_key(client, "verify")
    assert [client.get("/me", headers=door).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/me", headers=door)
    assert_limited(refused, "2 per 1 second", "verify", "key")
    assert refused.headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert client.get("/me", headers=door).status_code == 200


def test_forwarded_for_names_the_client_only_behind_a_trusted_proxy(make_client) -> None:
    client = make_client(rate_limit_address="1/minute", trusted_proxies="198.51.100.0/24")
    proxy = from_address(client, "198.51.100.1")

    def via_proxy(forwarded_for: str) -> int:
        return proxy.get("/readyz", headers={"X-Forwarded-For": forwarded_for}).status_code

    assert via_proxy("203.0.113.5") == 200
    assert via_proxy("203.0.113.5") == 429
    assert via_proxy("203.0.113.6") == 200
    # what the client wrote itself is left of what the proxy appended: the proxy's entry counts
    assert via_proxy("203.0.113.9, 203.0.113.5") == 429
    # a second trusted proxy in the chain is skipped
    assert via_proxy("203.0.113.7, 198.51.100.2") == 200
    assert via_proxy("203.0.113.7") == 429
    # a client that is not a trusted proxy cannot choose its address
    direct = from_address(client, "192.0.2.9")
    assert direct.get("/readyz", headers={"X-Forwarded-For": "203.0.113.20"}).status_code == 200
    assert direct.get("/readyz", headers={"X-Forwarded-For": "203.0.113.21"}).status_code == 429


def _redis():
    redis = pytest.importorskip("redis")
    server = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
    try:
        server.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")
    return server


def test_redis_storage_is_shared_by_two_app_instances(make_client) -> None:
    server = _redis()
    limits = {"rate_limit_storage": REDIS_URL, "rate_limit_verify": "3/minute"}
    first, second = make_client(**limits), make_client(**limits)  # two replicas of one gallery
    key_id, door = new_key(first, "verify")
    for stale in server.scan_iter(f"facegate:LIMITER/key/{key_id}/*"):  # counts of an earlier run
        server.delete(stale)
    assert first.get("/me", headers=door).status_code == 200
    assert second.get("/me", headers=door).status_code == 200
    assert first.get("/me", headers=door).status_code == 200
    assert_limited(second.get("/me", headers=door), "3 per 1 minute", "verify", "key")
    assert_limited(first.get("/me", headers=door), "3 per 1 minute", "verify", "key")


def test_an_unreachable_storage_lets_requests_through(make_client, caplog) -> None:
    client = make_client(rate_limit_storage="redis://127.0.0.1:1/0", rate_limit_verify="1/minute")
    _, door = new_key(client, "verify")
    with caplog.at_level(logging.ERROR, logger="service.api.rate_limit"):
        assert [client.get("/me", headers=door).status_code for _ in range(3)] == [200, 200, 200]
    assert "requests are not limited" in caplog.text


@pytest.mark.parametrize(
    "field",
    [
        {"rate_limit_verify": "ten per second"},
        {"rate_limit_storage": "memcached://127.0.0.1:11211"},
        {"trusted_proxies": "10.0.0.0/8, proxy.lan"},
    ],
)
def test_malformed_settings_are_refused(field: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(**field)


def test_every_limited_operation_declares_429_with_retry_after() -> None:
    spec = create_app(Settings()).openapi()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path == "/healthz":
                assert "429" not in operation["responses"]
                continue
            response = operation["responses"]["429"]
            assert "Retry-After" in response["headers"], f"{method} {path}"


def test_the_console_page_and_its_files_are_not_limited(make_client) -> None:
    """A browser loads the console's page and a dozen files at once, from one address."""
    client = make_client(rate_limit_address="2/minute")
    client.headers.pop("Authorization")
    for _ in range(5):
        assert client.get("/").status_code == 200
        assert client.get("/static/app.js").status_code == 200
    statuses = [client.get("/people").status_code for _ in range(3)]
    assert statuses[-1] == 429  # an API route from the same address still is
