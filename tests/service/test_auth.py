"""API keys: created once, hashed at rest, scoped, revocable; ensure() is idempotent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select, text, update
from starlette.requests import Request

from service.api.deps import require
from service.auth import CONFIGURED_PREFIX, MIN_CHOSEN_KEY_LEN, SCOPES, KeyStore, hash_key
from service.errors import Forbidden, LastAdminKey, NotFound, OwnKey
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.db import make_engine, session_factory
from service.gallery.tables import ApiKey, AuditEvent
from service.settings import Settings
from service.state import ensure_keys, show_created_key
from tests.service.storage_helpers import snapshot


@pytest.fixture
def keys(database_url):
    engine = make_engine(database_url)
    yield KeyStore(session_factory(engine))
    engine.dispose()


def test_create_and_authenticate(keys):
    plaintext, record = keys.create("door 1", {"verify"})
    assert plaintext.startswith("fg_") and len(plaintext) > 40
    assert record.scopes == {"verify"} and record.prefix == plaintext[:8] and record.active
    found = keys.authenticate(plaintext)
    assert found is not None and found.id == record.id and found.name == "door 1"
    wrongs = (
        plaintext + "x",
        plaintext[:-1],
        "fg_nothing",
        "",
        plaintext.upper(),
        "x" * 10_000,
        "fg_\x00abcdef",
    )
    for wrong in wrongs:
        assert keys.authenticate(wrong) is None
    assert [k.id for k in keys.list_keys()] == [record.id] and keys.count_active() == 1
    assert keys.get(record.id).created_at.tzinfo is not None


def test_keys_are_hashed_at_rest(keys):
    plaintext, _ = keys.create("kiosk", {"enroll"})
    secret_part = plaintext[8:]
    dump = repr(snapshot(keys.sessions.kw["bind"]))
    assert plaintext not in dump and secret_part not in dump and secret_part[:16] not in dump
    with keys.sessions() as s:
        stored = s.execute(text("SELECT key_hash, prefix FROM api_keys")).one()
    assert stored == (hash_key(plaintext), plaintext[:8])


def _authorise(keys: KeyStore, plaintext: str, scope: str) -> Caller:
    """What the API's scope dependency answers for this key (the check every route runs)."""
    request = Request({"type": "http", "headers": [(b"x-api-key", plaintext.encode())]})
    return require(scope)(request, SimpleNamespace(keys=keys))


def test_scopes_admin_implies_all_and_unknown_scopes_are_refused(keys):
    assert {"enroll", "verify", "metrics", "admin"} <= SCOPES
    admin_key, _ = keys.create("root", {"admin"})
    door_key, _ = keys.create("door", {"verify"})
    assert all(_authorise(keys, admin_key, s).key_name == "root" for s in SCOPES)
    assert _authorise(keys, door_key, "verify").key_name == "door"
    for scope in sorted(SCOPES - {"verify"}):
        with pytest.raises(Forbidden, match=f"lacks the '{scope}' scope"):
            _authorise(keys, door_key, scope)
    for bad in ({"root"}, set(), {"verify", "everything"}):
        with pytest.raises(ValueError, match=f"valid: {', '.join(sorted(SCOPES))}"):
            keys.create("bad", bad)
    for bad_name in ("", "   ", "n" * 101):
        with pytest.raises(ValueError):
            keys.create(bad_name, {"verify"})
    assert keys.count_active() == 2


def test_revoke(keys):
    plaintext, record = keys.create("temp", {"verify"})
    keys.revoke(record.id)
    assert keys.authenticate(plaintext) is None and keys.count_active() == 0
    revoked_at = keys.get(record.id).revoked_at
    keys.revoke(record.id)  # twice: no change
    assert keys.get(record.id).revoked_at == revoked_at is not None
    with pytest.raises(NotFound):
        keys.revoke(987654)


def test_last_used_at_is_recorded_at_most_once_a_minute(keys):
    plaintext, record = keys.create("cam", {"verify"})
    assert record.last_used_at is None
    keys.authenticate(plaintext)
    first = keys.get(record.id).last_used_at
    keys.authenticate(plaintext)
    assert first is not None and keys.get(record.id).last_used_at == first
    with keys.sessions.begin() as s:  # pretend the last use was long ago
        s.execute(update(ApiKey).values(last_used_at=first.replace(year=first.year - 1)))
    keys.authenticate(plaintext)
    assert keys.get(record.id).last_used_at > first


def test_ensure_is_idempotent_and_reactivates(keys):
    key = "fg_fixed_admin_key_for_scripts_0001"
    first = keys.ensure(key, "admin (env)", {"admin"})
    second = keys.ensure(key, "admin (env)", {"admin"})
    assert first.id == second.id and keys.count_active() == 1 and len(keys.list_keys()) == 1
    keys.create("another admin", {"admin"})  # the last admin key cannot be revoked
    keys.revoke(first.id)
    assert keys.authenticate(key) is None
    assert keys.ensure(key, "admin (env)", {"admin"}).id == first.id
    assert keys.authenticate(key).scopes == {"admin"}
    assert keys.ensure(key, "admin (env)", {"verify"}).scopes == {"verify"}
    for bad in ("short", "x" * (MIN_CHOSEN_KEY_LEN - 1), "x" * 300, "fg_has a space in it_0123456789abc"):
        with pytest.raises(ValueError, match="chosen API key"):
            keys.ensure(bad, "x", {"admin"})


def test_a_chosen_key_leaves_nothing_of_itself_in_clear(keys):
    a = keys.ensure("fg_SAMEprefix_key_number_one_0123456", "a", {"verify"})
    b = keys.ensure("fg_SAMEprefix_key_number_two_0123456", "b", {"enroll"})
    assert a.prefix == b.prefix == CONFIGURED_PREFIX
    assert keys.authenticate("fg_SAMEprefix_key_number_one_0123456").id == a.id
    assert keys.authenticate("fg_SAMEprefix_key_number_two_0123456").id == b.id
    dump = repr(snapshot(keys.sessions.kw["bind"]))
    assert "fg_SAME" not in dump and "SAMEprefix" not in dump
    # A row stored before this rule, with the chosen key's first characters in clear, loses them.
    with keys.sessions.begin() as s:
        s.execute(text("UPDATE api_keys SET prefix = 'fg_SAMEp' WHERE id = :id"), {"id": a.id})
    assert keys.ensure("fg_SAMEprefix_key_number_one_0123456", "a", {"verify"}).prefix == CONFIGURED_PREFIX
    assert "fg_SAME" not in repr(snapshot(keys.sessions.kw["bind"]))


def test_revoking_the_own_or_the_last_admin_key_is_refused_and_audited_otherwise(keys):
    root_plain, root = keys.create("root", {"admin"})
    _, door = keys.create("door", {"verify"})
    me = Caller(root.id, root.name, root.scopes)
    with pytest.raises(OwnKey):
        keys.revoke(root.id, root.id, audit.row(me, "key_revoke"))
    with pytest.raises(LastAdminKey):
        keys.revoke(root.id, None, audit.row(me, "key_revoke"))
    assert keys.authenticate(root_plain) is not None
    keys.revoke(door.id, root.id, audit.row(me, "key_revoke"))
    _, second = keys.create("second admin", {"admin"})
    keys.revoke(root.id, second.id, audit.row(Caller(second.id, second.name, second.scopes), "key_revoke"))
    assert keys.authenticate(root_plain) is None
    with keys.sessions() as s:
        rows = s.execute(
            select(AuditEvent.action, AuditEvent.key_name, AuditEvent.detail).order_by(AuditEvent.id)
        ).all()
    assert [(r[0], r[1]) for r in rows] == [("key_revoke", "root"), ("key_revoke", "second admin")]
    assert rows[0][2] == {"key_id": door.id}


def test_first_start_creates_an_admin_key_and_shows_it_once(keys, capsys):
    settings = Settings(admin_key=None)
    created = ensure_keys(keys, settings)
    assert created is not None and keys.authenticate(created).scopes == {"admin"}
    assert ensure_keys(keys, settings) is None and keys.count_active() == 1  # a restart: no new key
    show_created_key(created)
    out = capsys.readouterr().out
    assert out.count(created) == 1 and "shown once" in out
