"""The access log: GET /audit filters and pages, retention purges (automatic and by hand) and are
themselves audited, and the console's Audit page. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import get_args

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from service import audit_retention
from service.api.routes.audit import Action
from service.cli import app as cli
from service.gallery import audit
from service.gallery.audit import ACTIONS, Caller
from service.gallery.db import make_engine, session_factory
from service.gallery.tables import AuditEvent
from service.settings import Settings, get_settings
from tests.service.api_helpers import assert_problem
from tests.service.conftest import ADMIN_KEY

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DOOR = Caller(41, "front-door", frozenset({"verify"}))
DESK = Caller(42, "hr-desk", frozenset({"enroll"}))


@pytest.fixture
def sessions(database_url):
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


def add(sessions, caller: Caller, action: str, at: datetime, **fields) -> int:
    event = audit.row(caller, action, **fields)
    event.at = at
    with sessions.begin() as s:
        s.add(event)
        s.flush()
        return event.id


@pytest.fixture
def logged(sessions):
    """Eight rows over three days: two keys, three people, several actions and results."""
    day = timedelta(days=1)
    rows = [
        (DESK, "enroll", NOW - 3 * day, {"person_id": "E1"}),
        (DESK, "enroll", NOW - 3 * day + timedelta(minutes=5), {"person_id": "E2"}),
        (DOOR, "verify", NOW - 2 * day, {"person_id": "E1", "result": "match", "score": 0.99}),
        (
            DOOR,
            "verify",
            NOW - 2 * day + timedelta(hours=1),
            {"person_id": "E2", "result": "no_match", "score": 0.2},
        ),
        (DOOR, "identify", NOW - day, {"person_id": None, "result": "unknown", "score": 0.1}),
        (DESK, "suspend", NOW - day + timedelta(hours=2), {"person_id": "E2"}),
        (DOOR, "verify", NOW - timedelta(hours=3), {"person_id": "E2", "result": "suspended"}),
        (DOOR, "identify", NOW - timedelta(hours=1), {"person_id": "E3", "result": "match", "score": 0.97}),
    ]
    return [add(sessions, c, a, t, **f) for c, a, t, f in rows]


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["items"]]


# ---- GET /audit ----


def test_filters_by_person_key_action_result_and_time(make_client, logged):
    client = make_client()
    mine = [i for i in ids(client.get("/audit")) if i in logged]
    assert mine == logged[::-1]  # newest first; the service's own rows (none here) would come first
    row = client.get("/audit", params={"person_id": "E3"}).json()["items"][0]
    assert row == {
        "id": logged[7],
        "at": row["at"],
        "action": "identify",
        "key_id": 41,
        "key_name": "front-door",
        "person_id": "E3",
        "result": "match",
        "score": 0.97,
        "model_version": None,
        "detail": {},
    }
    assert datetime.fromisoformat(row["at"]) == NOW - timedelta(hours=1)

    assert ids(client.get("/audit", params={"person_id": "E2"})) == [
        logged[6],
        logged[5],
        logged[3],
        logged[1],
    ]
    assert ids(client.get("/audit", params={"key_id": 42})) == [logged[5], logged[1], logged[0]]
    assert ids(client.get("/audit", params={"action": "verify"})) == [logged[6], logged[3], logged[2]]
    assert ids(client.get("/audit", params={"action": ["enroll", "suspend"]})) == [
        logged[5],
        logged[1],
        logged[0],
    ]
    assert ids(client.get("/audit", params={"result": "match"})) == [logged[7], logged[2]]
    assert ids(client.get("/audit", params={"person_id": "E2", "key_id": 41, "result": "suspended"})) == [
        logged[6]
    ]
    # from is inclusive, to exclusive; any zone, or none (UTC)
    since = (NOW - timedelta(days=2)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    until = (NOW - timedelta(days=1)).replace(tzinfo=None)
    got = ids(client.get("/audit", params={"from": since.isoformat(), "to": until.isoformat()}))
    assert got == [logged[3], logged[2]]
    assert ids(client.get("/audit", params={"from": NOW.isoformat()})) == []
    assert ids(client.get("/audit", params={"to": (NOW - timedelta(days=3)).isoformat()})) == []
    # times that leave the calendar in UTC are its first or last moment, not an error
    far = client.get(
        "/audit", params={"from": "0001-01-01T00:00:00+23:59", "to": "9999-12-31T23:59:59-23:59"}
    )
    assert [i for i in ids(far) if i in logged] == logged[::-1]


def test_pages_follow_the_cursor_and_limits_are_bounded(make_client, logged):
    client = make_client()
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, "key_id": 41}
        if cursor is not None:
            params["cursor"] = cursor
        body = client.get("/audit", params=params).json()
        assert len(body["items"]) <= 3 and body["limit"] == 3
        seen += [r["id"] for r in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [i for i in logged[::-1] if i in logged[2:5] + logged[6:]] and pages == 2
    for bad in ({"limit": 0}, {"limit": 501}, {"cursor": 0}, {"cursor": 2**31}, {"key_id": "x"}):
        assert_problem(client.get("/audit", params=bad), 422, "validation_error")
    for bad in ({"action": "dance"}, {"from": "yesterday"}, {"result": "NOT OK"}, {"person_id": "-x"}):
        assert_problem(client.get("/audit", params=bad), 422, "validation_error")


def test_only_admin_keys_read_the_log(make_client):
    client = make_client()
    door = client.post("/keys", json={"name": "door", "scopes": ["verify"]}).json()
    assert_problem(client.get("/audit", headers={"Authorization": f"Bearer {door['key']}"}), 403, "forbidden")
    assert_problem(client.get("/audit", headers={"Authorization": ""}), 401, "unauthorized")
    # what the admin just did is in the log, under its key
    me = next(k for k in client.get("/keys").json() if k["name"].startswith("admin"))
    rows = client.get("/audit", params={"key_id": me["id"], "action": "key_create"}).json()["items"]
    assert rows and rows[0]["detail"]["scopes"] == ["verify"] and rows[0]["key_name"] == me["name"]


def test_the_documented_actions_are_the_audited_ones():
    assert set(get_args(Action)) == ACTIONS


# ---- retention ----


def purge_rows(sessions) -> list[AuditEvent]:
    with sessions() as s:
        return list(
            s.scalars(select(AuditEvent).where(AuditEvent.action == "audit_purge").order_by(AuditEvent.id))
        )


def count(sessions) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def test_purge_deletes_rows_past_the_retention_and_records_itself(sessions):
    old = [add(sessions, DOOR, "verify", NOW - timedelta(days=d), person_id="E1") for d in (400, 31, 30.5)]
    kept = [add(sessions, DOOR, "verify", NOW - timedelta(days=d), person_id="E1") for d in (29, 1)]
    done = audit_retention.purge(sessions, 30, now=NOW, batch=2)  # two batches and a last one
    assert done.deleted == 3 and done.cutoff == NOW - timedelta(days=30)
    with sessions() as s:
        left = set(s.scalars(select(AuditEvent.id)))
    assert not left & set(old) and set(kept) <= left
    (row,) = purge_rows(sessions)
    assert row.key_name == "retention (FACEGATE_AUDIT_RETENTION_DAYS)" and row.key_id is None
    assert row.detail == {
        "deleted": 3,
        "cutoff": (NOW - timedelta(days=30)).isoformat(),
        "retention_days": 30,
    }
    # nothing left to purge: the automatic purge adds no row; one asked for by hand does
    assert audit_retention.purge(sessions, 30, now=NOW).deleted == 0 and len(purge_rows(sessions)) == 1
    audit_retention.purge(sessions, 30, now=NOW, record_empty=True)
    assert [r.detail["deleted"] for r in purge_rows(sessions)] == [3, 0]
    with pytest.raises(ValueError):
        audit_retention.purge(sessions, 0)


def test_the_service_purges_at_start_and_then_on_its_own(make_client, sessions):
    add(sessions, DOOR, "verify", NOW - timedelta(days=90), person_id="old")
    client = make_client(audit_retention_days=60, audit_purge_interval=0.2)
    assert _until(lambda: not client.get("/audit", params={"person_id": "old"}).json()["items"])
    add(sessions, DOOR, "verify", NOW - timedelta(days=61), person_id="later")  # while it runs
    assert _until(lambda: not client.get("/audit", params={"person_id": "later"}).json()["items"])
    rows = client.get("/audit", params={"action": "audit_purge"}).json()["items"]
    assert [r["detail"]["deleted"] for r in rows] == [1, 1] and rows[0]["detail"]["retention_days"] == 60


def test_retention_zero_keeps_everything(make_client, sessions):
    first = add(sessions, DOOR, "verify", NOW - timedelta(days=5000), person_id="ancient")
    client = make_client(audit_purge_interval=0.2)
    assert client.app.state.audit_purger.enabled is False
    time.sleep(0.5)
    assert ids(client.get("/audit", params={"person_id": "ancient"})) == [first]


def _until(check, deadline: float = 10.0):
    end = time.monotonic() + deadline
    while not (value := check()):
        if time.monotonic() > end:
            return value
        time.sleep(0.1)
    return value


@pytest.fixture
def cli_env(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FACEGATE_AUDIT_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_facegate_audit_purge(sessions, cli_env):
    add(sessions, DOOR, "verify", NOW - timedelta(days=45), person_id="E1")
    add(sessions, DOOR, "verify", NOW - timedelta(days=10), person_id="E1")
    dry = CliRunner().invoke(cli, ["audit", "purge", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 audit rows" in dry.output and count(sessions) == 2
    done = CliRunner().invoke(cli, ["audit", "purge"])
    assert done.exit_code == 0 and "deleted 1 audit rows" in done.output, done.output
    (row,) = purge_rows(sessions)
    assert row.key_name == "cli (facegate audit purge)" and row.detail["deleted"] == 1
    tighter = CliRunner().invoke(cli, ["audit", "purge", "--days", "5"])
    assert (
        "deleted 1 audit rows" in tighter.output and count(sessions) == 2
    )  # the 10-day row went, a purge row came
    assert [r.detail["retention_days"] for r in purge_rows(sessions)] == [30, 5]


def test_audit_purge_without_a_retention_does_nothing(sessions, cli_env, monkeypatch):
    monkeypatch.setenv("FACEGATE_AUDIT_RETENTION_DAYS", "0")
    get_settings.cache_clear()
    add(sessions, DOOR, "verify", NOW - timedelta(days=4000), person_id="E1")
    result = CliRunner().invoke(cli, ["audit", "purge"])
    assert result.exit_code == 0 and "nothing purged" in result.output and count(sessions) == 1


# ---- the console's Audit page ----


@pytest.fixture
def console(tmp_path):
    """A browser (skips without chromium) and the app under uvicorn on a fresh SQLite gallery."""
    from tests.service.console_browser import launch_browser, run_server

    browsers = launch_browser()
    browser = next(browsers)
    database_url = f"sqlite:///{tmp_path / 'gallery.db'}"
    servers = run_server(Settings(database_url=database_url, data_dir=tmp_path / "var", admin_key=ADMIN_KEY))
    base = next(servers)
    engine = make_engine(database_url)
    yield browser, base, session_factory(engine)
    engine.dispose()
    next(servers, None)
    next(browsers, None)


@pytest.mark.browser
def test_console_audit_page_filters_and_pages(console):
    from tests.service.console_browser import new_page, open_tab, screenshot, sign_in

    browser, base, sessions = console
    for i in range(30):
        add(sessions, DOOR, "verify", NOW - timedelta(minutes=30 - i), person_id=f"P{i % 3}", result="match")
    add(sessions, DESK, "suspend", NOW, person_id="P1")
    context, page, errors = new_page(browser, base, 1280, 900)
    sign_in(page)
    open_tab(page, "Audit")
    rows = page.locator("#view table.audit tbody tr")
    page.locator("#view .audit-status", has_text="1–25").wait_for()
    assert rows.count() == 25  # one page
    first = rows.first.inner_text()
    assert "suspend" in first and "hr-desk" in first and "P1" in first
    screenshot(page, "audit")
    page.get_by_role("button", name="Older →").click()
    page.locator("#view .audit-status", has_text="26–").wait_for()
    assert rows.count() >= 6
    page.get_by_role("button", name="← Newer").click()
    page.locator("#view .audit-status", has_text="1–25").wait_for()
    page.get_by_label("Person").fill("P1")
    page.get_by_label("Action").select_option("verify")
    page.get_by_role("button", name="Apply").click()
    page.locator("#view .audit-status", has_text="1–10").wait_for()
    texts = rows.all_inner_texts()
    assert len(texts) == 10 and all("P1" in t and "verify" in t for t in texts)
    assert page.get_by_role("button", name="Older →").is_disabled()
    screenshot(page, "audit-filtered")
    context.close()
    assert not errors, errors
    # phone width: the table scrolls inside its card, the page does not
    context, page, errors = new_page(browser, base, 390, 844)
    sign_in(page)
    open_tab(page, "Audit")
    page.locator("#view .audit-status", has_text="1–").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    screenshot(page, "audit-phone")
    context.close()
    assert not errors, errors
