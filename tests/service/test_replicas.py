"""Two replicas on one database stay consistent through the change log (SQLite file and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.service.api_helpers import assert_problem, post_photo
from tests.service.lifecycle_helpers import private_models, start_client

pytestmark = pytest.mark.lfw

DEADLINE = 5.0  # generous for a loaded CI machine; replicas poll every 0.2 s here


def _until(check, deadline: float = DEADLINE):
    """Poll ``check`` until it returns something truthy; returns it (or the last falsy value)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def _verified(client, probe: Path, person_id: str) -> dict | None:
    r = post_photo(client, "/verify", probe, person_id=person_id)
    return r.json() if r.status_code == 200 else None


@pytest.fixture
def replicas(database_url: str, tmp_path: Path):
    models = private_models(tmp_path)
    clients = []

    def start():
        c = start_client(database_url, tmp_path, models, sync_interval=0.2)
        clients.append(c)
        return c

    yield start
    for c in clients:
        c.__exit__(None, None, None)


def test_enrol_on_one_replica_is_answered_by_the_other(replicas, lfw_people) -> None:
    a, b = replicas(), replicas()
    alice, bob = lfw_people[0], lfw_people[1]
    probe = sorted(alice.glob("*.jpg"))[1]
    assert_problem(post_photo(b, "/verify", probe, person_id="alice"), 404, "person_not_found")

    r = post_photo(a, "/enroll", sorted(alice.glob("*.jpg"))[0], name="Alice", person_id="alice",
                   face_selection="largest")  # fmt: skip
    assert r.status_code == 201, r.text
    body = _until(lambda: _verified(b, probe, "alice"))
    assert body and body["match"], body
    found = post_photo(b, "/identify", probe).json()
    assert found["result"] == "match" and found["person"]["person_id"] == "alice"

    # a replacement on B (another photo, another name) reaches A; then a deletion on B
    r = post_photo(b, "/enroll", sorted(alice.glob("*.jpg"))[2], name="Alice R.", person_id="alice",
                   face_selection="largest", replace=True)  # fmt: skip
    assert r.status_code == 201, r.text
    assert _until(lambda: a.get("/people/alice").json().get("name") == "Alice R.")
    assert _until(lambda: post_photo(a, "/identify", probe).json()["candidates"][0]["name"] == "Alice R.")

    r = post_photo(
        b, "/enroll", sorted(bob.glob("*.jpg"))[0], name="Bob", person_id="bob", face_selection="largest"
    )
    assert r.status_code == 201
    assert b.delete("/people/alice").status_code == 204
    gone = _until(lambda: post_photo(a, "/verify", probe, person_id="alice").status_code == 404)
    assert gone
    assert _until(lambda: a.app.state.facegate.recognizer.gallery.size() == 1)
    assert a.get("/readyz").status_code == 200 and b.get("/readyz").status_code == 200

    # a replica started later (or restarted) starts from the database
    c = replicas()
    assert c.app.state.facegate.recognizer.gallery.size() == 1
    assert post_photo(c, "/verify", sorted(bob.glob("*.jpg"))[1], person_id="bob").json()["match"]


def test_sync_interval_zero_turns_replication_off(database_url: str, tmp_path: Path, lfw_people) -> None:
    models = private_models(tmp_path)
    a = start_client(database_url, tmp_path, models, sync_interval=0)
    b = start_client(database_url, tmp_path, models, sync_interval=0)
    try:
        person = lfw_people[2]
        r = post_photo(a, "/enroll", sorted(person.glob("*.jpg"))[0], name="C", person_id="c",
                       face_selection="largest")  # fmt: skip
        assert r.status_code == 201
        time.sleep(0.5)
        assert b.app.state.facegate.recognizer.gallery.size() == 0
        assert b.app.state.facegate.replicator.poll_once() == 1  # what the thread would have done
        assert b.app.state.facegate.recognizer.gallery.size() == 1
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)
