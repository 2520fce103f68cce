"""People who leave or pause: suspended or expired people are never matched, verified or counted
as duplicates, reappear when reactivated, on every replica; the staff sync; migration 0003.

SQLite and PostgreSQL (the ``database_url`` fixtures). The gallery-level tests use random unit
vectors; the HTTP tests use LFW photos with the shipped model.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from service import people_sync
from service.cli import app as cli
from service.gallery import status
from service.gallery.audit import Caller
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.gallery import Gallery
from service.gallery.synced import SyncedGallery
from service.gallery.tables import AuditEvent, ChangeLog, Embedding, Person, ReferenceCrop
from service.index import FaceIndex
from service.replication import ChangeFeed
from service.settings import get_settings
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.storage_helpers import (
    DIM,
    assert_index_equals_database,
    enroll,
    make_enrolment,
    new_gallery,
    replica_pair,
    snapshot,
)

HR = Caller(7, "hr-desk", frozenset({"enroll"}))
SUSPEND = status.StatusChange(status="suspended")
REACTIVATE = status.StatusChange(status="active")


def expiry(at: datetime | None) -> status.StatusChange:
    return status.StatusChange(expires_at=at, set_expiry=True)


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
def people(sessions):
    """A gallery of five people p0..p4 and their enrolments."""
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    rng = np.random.default_rng(3)
    found = {pid: make_enrolment(rng, pid) for pid in ("p0", "p1", "p2", "p3", "p4")}
    for e in found.values():
        enroll(g, e)
    return g, found


def found_ids(g: Gallery, vector: np.ndarray, k: int = 5) -> list[str]:
    return [c.person_id for c in g.search(vector, k)]


# ---- the gallery ----


def test_a_suspended_person_is_never_found_and_reappears_when_reactivated(people):
    g, e = people
    record = g.set_status("p2", SUSPEND)
    assert record.status == "suspended" and record.suspended_at is not None
    assert "p2" not in found_ids(g, e["p2"].vector)
    assert found_ids(g, e["p2"].vector, k=4) == found_ids(g, e["p2"].vector, k=5)[:4]
    assert len(g.search(e["p2"].vector, 5)) == 4  # the place is not wasted on them
    assert g.size() == 4  # the N of the 1:N threshold counts only matchable people
    assert g.availability.reason("p2") == "suspended"
    assert g.consistency_check() and len(g.index) == 5  # the embedding stays stored and indexed
    # a restart (a new gallery loading the database) knows the suspension
    restarted = new_gallery(g)
    restarted.load()
    assert "p2" not in found_ids(restarted, e["p2"].vector) and restarted.size() == 4

    record = g.set_status("p2", REACTIVATE)
    assert record.status == "active" and record.suspended_at is None
    assert found_ids(g, e["p2"].vector)[0] == "p2" and g.size() == 5
    assert g.availability.reason("p2") is None


def test_expiry_takes_effect_at_its_time_without_anyone_acting(people):
    g, e = people
    at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    record = g.set_status("p1", expiry(at))
    assert record.status == "active" and record.expires_at == at
    assert found_ids(g, e["p1"].vector)[0] == "p1" and g.size() == 5
    time.sleep(max(0.0, (at - datetime.now(timezone.utc)).total_seconds()) + 0.1)
    assert "p1" not in found_ids(g, e["p1"].vector) and g.size() == 4
    assert g.availability.reason("p1") == "expired"
    # an expiry already past is effective at once; clearing it brings the person back
    g.set_status("p3", expiry(datetime.now(timezone.utc) - timedelta(days=1)))
    assert "p3" not in found_ids(g, e["p3"].vector)
    g.set_status("p1", expiry(None))
    assert found_ids(g, e["p1"].vector)[0] == "p1"
    # a suspended person with a future expiry stays suspended
    g.set_status(
        "p4", status.StatusChange(status="suspended", expires_at=at + timedelta(days=9), set_expiry=True)
    )
    assert g.availability.reason("p4") == "suspended"


def test_status_changes_are_audited_and_logged_for_the_replicas(people):
    g, _ = people
    before = ChangeFeed(g.session_factory).position()
    g.set_status("p0", SUSPEND, status_audit(HR))
    g.set_status("p0", SUSPEND, status_audit(HR))  # no change: audited as such, nothing logged
    g.set_status("p0", REACTIVATE, status_audit(HR))
    with g.session_factory() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.person_id == "p0").order_by(AuditEvent.id)).all()
        changes = s.scalars(select(ChangeLog).where(ChangeLog.id > before)).all()
    assert [(r.action, r.result, r.key_name) for r in rows] == [
        ("suspend", "ok", "hr-desk"),
        ("suspend", "unchanged", "hr-desk"),
        ("reactivate", "ok", "hr-desk"),
    ]
    assert rows[0].detail["before"]["status"] == "active" and rows[0].detail["after"]["status"] == "suspended"
    assert [(c.op, c.person_id) for c in changes] == [("upsert", "p0"), ("upsert", "p0")]


def status_audit(caller: Caller):
    from service.gallery import audit

    return audit.row(caller, "person_update")


def test_an_unknown_person_cannot_be_suspended(people):
    from service.errors import PersonNotFound

    g, _ = people
    before = snapshot(g.session_factory.kw["bind"])
    with pytest.raises(PersonNotFound):
        g.set_status("nobody", SUSPEND, status_audit(HR))
    assert snapshot(g.session_factory.kw["bind"]) == before


def test_another_replica_sees_the_suspension_through_the_change_log(sessions):
    a, b, follow = replica_pair(sessions)
    rng = np.random.default_rng(5)
    e = {pid: make_enrolment(rng, pid) for pid in ("x", "y", "z")}
    for one in e.values():
        enroll(a, one)
    follow.poll_once()
    assert found_ids(b, e["y"].vector)[0] == "y"

    a.set_status("y", SUSPEND)
    follow.poll_once()
    assert "y" not in found_ids(b, e["y"].vector) and b.size() == 2
    assert b.availability.reason("y") == "suspended"
    a.set_status("z", expiry(datetime.now(timezone.utc) - timedelta(minutes=1)))
    follow.poll_once()
    assert b.availability.reason("z") == "expired" and b.size() == 1

    a.set_status("y", REACTIVATE)
    a.set_status("z", expiry(None))
    follow.poll_once()
    assert found_ids(b, e["y"].vector)[0] == "y" and found_ids(b, e["z"].vector)[0] == "z"
    assert b.size() == 3
    assert_index_equals_database(b)


def test_a_model_being_adopted_learns_the_suspension_from_the_listener(sessions):
    """During a swap the version being adopted is refreshed by the listener of the one answering."""
    current = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    adopted = SyncedGallery(sessions, FaceIndex(DIM), "v1")
    current.load()
    adopted.load()
    current.add_listener(lambda pid, source: adopted.refresh([pid]))
    e = make_enrolment(np.random.default_rng(8), "w")
    enroll(current, e)
    current.set_status("w", SUSPEND)
    assert adopted.availability.reason("w") == "suspended" and "w" not in found_ids(adopted, e.vector)


# ---- the staff list ----


def test_staff_csv_reading():
    assert people_sync.read_staff("person_id,name\nE1, Ada\n\nE2,Bob\nE1,Ada\n") == ["E1", "E2"]
    assert people_sync.read_staff("name;x\n") == ["name;x"]  # no person_id header: first column
    assert people_sync.read_staff("E7\nE8\n") == ["E7", "E8"]
    assert people_sync.read_staff("Name,Person_ID\nAda, E3 \n") == ["E3"]
    with pytest.raises(people_sync.EmptyStaffList):
        people_sync.read_staff("person_id\n\n")


@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_people_sync_dry_run_then_sync(people, cli_env, tmp_path):
    g, e = people
    g.set_status("p4", SUSPEND)
    staff = tmp_path / "staff.csv"
    staff.write_text("person_id,name\np0,A\np1,B\np4,E\nnew-hire,F\n")
    engine = g.session_factory.kw["bind"]
    before = snapshot(engine)

    dry = CliRunner().invoke(cli, ["people", "sync", str(staff), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would suspend p2" in dry.output and "would suspend p3" in dry.output
    assert "would suspend p0" not in dry.output and "would suspend p4" not in dry.output
    assert "listed but not enrolled: new-hire" in dry.output
    assert "listed but suspended" in dry.output and "p4" in dry.output
    assert snapshot(engine) == before  # a dry run writes nothing, not even an audit row

    done = CliRunner().invoke(cli, ["people", "sync", str(staff)])
    assert done.exit_code == 0, done.output
    assert "suspend p2" in done.output and "would" not in done.output
    with g.session_factory() as s:
        states = dict(s.execute(select(Person.person_id, Person.status)).all())
        rows = s.execute(
            select(AuditEvent.action, AuditEvent.person_id, AuditEvent.key_name, AuditEvent.detail)
            .where(AuditEvent.action.in_(["suspend", "people_sync"]))
            .order_by(AuditEvent.id)
        ).all()
        embeddings = s.scalar(select(func.count()).select_from(Embedding))
    assert states == {"p0": "active", "p1": "active", "p2": "suspended", "p3": "suspended", "p4": "suspended"}
    assert embeddings == 5  # nobody is deleted
    assert [(r.action, r.person_id) for r in rows][-3:] == [
        ("suspend", "p2"),
        ("suspend", "p3"),
        ("people_sync", None),
    ]
    assert rows[-1].key_name == "cli (facegate people sync)"
    assert rows[-1].detail["suspended"] == 2 and rows[-1].detail["listed_but_not_enrolled"] == 1
    assert rows[-2].detail["source"] == "staff.csv"

    # a gallery started now (a restart, another replica) loads the suspensions
    g2 = SyncedGallery(g.session_factory, FaceIndex(DIM), "m1")
    g2.load()
    assert "p2" not in found_ids(g2, e["p2"].vector) and g2.size() == 2

    again = CliRunner().invoke(cli, ["people", "sync", str(staff), "--reactivate"])
    assert again.exit_code == 0, again.output
    assert "reactivate p4" in again.output
    with g.session_factory() as s:
        assert s.scalar(select(Person.status).where(Person.person_id == "p4")) == "active"


def test_an_empty_staff_list_is_refused(people, cli_env, tmp_path):
    g, _ = people
    staff = tmp_path / "empty.csv"
    staff.write_text("person_id\n")
    before = snapshot(g.session_factory.kw["bind"])
    result = CliRunner().invoke(cli, ["people", "sync", str(staff)])
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "refusing to suspend everyone" in said
    assert snapshot(g.session_factory.kw["bind"]) == before


# ---- migration 0003 ----


def test_migration_0003_keeps_existing_people_their_crops_and_embeddings(blank_database_url):
    """A gallery stored at 0002 upgrades with everyone active and nothing lost (on SQLite a table
    copy of ``people`` would cascade-delete every crop and embedding)."""
    engine = make_engine(blank_database_url)
    migrate(engine, "0002")
    rng = np.random.default_rng(11)
    e = {pid: make_enrolment(rng, pid) for pid in ("old-1", "old-2")}
    with engine.begin() as conn:  # the 0002 schema, written as 0002-era code wrote it
        for pk, one in enumerate(e.values(), start=1):
            t = "2026-01-01 00:00:00"
            conn.execute(
                text(
                    "INSERT INTO people (id, person_id, name, created_at, updated_at) VALUES (:pk, :pid, :n, :t, :t)"
                ),
                {"pk": pk, "pid": one.person_id, "n": one.name, "t": t},
            )
            conn.execute(
                text(
                    "INSERT INTO reference_crops (person_pk, image_png, width, height, meta, photo_sha256, "
                    "created_at, kind) VALUES (:pk, :png, 12, 14, '{}', :sha, :t, 'canvas')"
                ),
                {"pk": pk, "png": one.crop, "sha": one.sha, "t": t},
            )
            conn.execute(
                text(
                    "INSERT INTO embeddings (person_pk, model_version, vector, created_at) "
                    "VALUES (:pk, 'm1', :v, :t)"
                ),
                {"pk": pk, "v": one.vector.tobytes(), "t": t},
            )
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as s:
        assert dict(s.execute(select(Person.person_id, Person.status)).all()) == {
            "old-1": "active",
            "old-2": "active",
        }
        assert s.scalar(select(func.count()).select_from(ReferenceCrop)) == 2
        assert s.scalar(select(func.count()).select_from(Embedding)) == 2
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    assert g.load() == 2
    assert found_ids(g, e["old-2"].vector)[0] == "old-2"
    g.set_status("old-2", SUSPEND)
    assert found_ids(g, e["old-2"].vector) == ["old-1"]
    # a downgrade would make the suspended person matchable again: refused while one is held
    from service.gallery.db import downgrade

    with pytest.raises(RuntimeError, match="suspended or have an expiry"):
        downgrade(engine, "0002")
    g.set_status("old-2", REACTIVATE)
    downgrade(engine, "0002")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embeddings")).scalar() == 2
        assert conn.execute(text("SELECT count(*) FROM reference_crops")).scalar() == 2
    engine.dispose()


# ---- over HTTP: /verify, /identify, /enroll ----


def _photos(lfw_people):
    one = sorted(lfw_people[0].glob("*.jpg"))
    other = sorted(lfw_people[1].glob("*.jpg"))
    return one, other


@pytest.mark.lfw
def test_suspension_in_verify_identify_and_duplicates(make_client, lfw_people):
    client = make_client()
    one, other = _photos(lfw_people)
    assert (
        post_photo(
            client, "/enroll", one[0], name="Ann", person_id="ann", face_selection="largest"
        ).status_code
        == 201
    )
    assert (
        post_photo(
            client, "/enroll", other[0], name="Bo", person_id="bo", face_selection="largest"
        ).status_code
        == 201
    )
    hr = client.post("/keys", json={"name": "hr", "scopes": ["enroll"]}).json()["key"]
    door = client.post("/keys", json={"name": "door", "scopes": ["verify"]}).json()["key"]

    # the door key may not suspend; the enrolment desk may
    r = client.patch("/people/ann", json={"status": "suspended"}, headers={"Authorization": f"Bearer {door}"})
    assert_problem(r, 403, "forbidden")
    r = client.patch("/people/ann", json={"status": "suspended"}, headers={"Authorization": f"Bearer {hr}"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended" and r.json()["matchable"] is False and r.json()["suspended_at"]

    body = assert_problem(post_photo(client, "/verify", one[0], person_id="ann"), 409, "person_suspended")
    assert body["person_id"] == "ann"
    found = post_photo(client, "/identify", one[0]).json()
    assert found["result"] != "match" or found["person"]["person_id"] != "ann"
    assert "ann" not in [c["person_id"] for c in found["candidates"]]  # not even for an admin
    assert found["gallery_size"] == 1
    # the same face under a new id is no duplicate of a suspended person
    r = post_photo(client, "/enroll", one[0], name="Ann again", person_id="ann-2", face_selection="largest")
    assert r.status_code == 201, r.text
    assert client.delete("/people/ann-2").status_code == 204
    # the person and their data are all still there
    person = client.get("/people/ann").json()
    assert person["status"] == "suspended" and person["model_versions"]
    assert client.get("/people/ann/export").json()["person"]["status"] == "suspended"
    rows = client.get("/audit", params={"person_id": "ann", "action": "verify"}).json()["items"]
    assert rows[0]["result"] == "suspended" and rows[0]["score"] is None

    # reactivated: verified, identified and counted as a duplicate again
    r = client.patch("/people/ann", json={"status": "active"}, headers={"Authorization": f"Bearer {hr}"})
    assert r.status_code == 200 and r.json()["matchable"] is True
    assert post_photo(client, "/verify", one[0], person_id="ann").json()["match"] is True
    found = post_photo(client, "/identify", one[0]).json()
    assert found["result"] == "match" and found["person"]["person_id"] == "ann" and found["gallery_size"] == 2
    r = post_photo(client, "/enroll", one[0], name="Ann again", person_id="ann-2", face_selection="largest")
    assert_problem(r, 409, "duplicate_face")


@pytest.mark.lfw
def test_expiry_over_http_and_bad_updates(make_client, lfw_people):
    client = make_client()
    one, _ = _photos(lfw_people)
    assert (
        post_photo(client, "/enroll", one[0], name="Cy", person_id="cy", face_selection="largest").status_code
        == 201
    )
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    r = client.patch("/people/cy", json={"expires_at": past})
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["matchable"] is False
    body = assert_problem(post_photo(client, "/verify", one[0], person_id="cy"), 409, "person_expired")
    assert body["expires_at"]
    assert post_photo(client, "/identify", one[0]).json()["result"] == "unknown"
    # a zone-less time is UTC; a future one makes the person matchable again
    future = (datetime.now(timezone.utc) + timedelta(days=30)).replace(tzinfo=None, microsecond=0)
    r = client.patch("/people/cy", json={"expires_at": future.isoformat()})
    assert r.status_code == 200 and r.json()["matchable"] is True
    assert r.json()["expires_at"].startswith(future.isoformat())
    assert post_photo(client, "/verify", one[0], person_id="cy").json()["match"] is True
    r = client.patch("/people/cy", json={"expires_at": None})
    assert r.status_code == 200 and r.json()["expires_at"] is None

    for bad in ({}, {"status": "gone"}, {"status": None}, {"name": "x"}, {"expires_at": "tomorrow"}):
        assert_problem(client.patch("/people/cy", json=bad), 422, "validation_error")
    r = client.patch(
        "/people/cy",
        content=b'{"status": "suspended", "status": "active"}',
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 422, "invalid_request")
    assert_problem(client.patch("/people/nobody", json={"status": "suspended"}), 404, "person_not_found")
    assert client.get("/people/cy").json()["status"] == "active"
