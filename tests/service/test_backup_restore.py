"""Backup and restore: one consistent archive of a deployment, restored into an empty one.

Every database row comes back exactly (SQLite to PostgreSQL and back), id generators stay past
every id the source handed out, the model versions in use travel with it, a restored service
identifies every enrolled LFW person again, a non-empty target is refused unless forced, and a
truncated or altered archive is refused before anything is written.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, make_url, select, text
from typer.testing import CliRunner

from service.api.main import create_app
from service.auth import KeyStore
from service.backup import BackupError, backup
from service.crop_embed import StoredCrop
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.cipher import TemplateCipher, new_key
from service.gallery.db import make_engine, normalise_url, session_factory
from service.gallery.gallery import Gallery
from service.gallery.synced import SyncedGallery
from service.index import FaceIndex
from service.restore import restore
from service.settings import Settings
from tests.conftest import REPO, throwaway_postgres_database
from tests.service.conftest import ADMIN_KEY, models_available
from tests.service.storage_helpers import DIM, enroll, make_enrolment, unit

K1 = new_key("k1")
ADMIN = Caller(None, "test", frozenset({"admin"}))
SMALL_MODEL = REPO / "models" / "baselines" / "scratch-mobilefacenet"  # 4 MB, version 0.1.0


# ---- a second, empty database of the other backend ----


def backend_of(url: str) -> str:
    return make_url(normalise_url(url)).get_backend_name()


@pytest.fixture
def other_blank_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A database without tables on the other backend than ``database_url``'s."""
    if backend_of(database_url) == "postgresql":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    yield from throwaway_postgres_database()


@pytest.fixture
def engines(database_url, other_blank_url):
    source, target = make_engine(database_url), make_engine(other_blank_url)
    yield source, target
    source.dispose()
    target.dispose()


def rows_of(engine) -> dict[str, list[dict]]:
    """Every row of every table (reflected, so typed), in primary-key order, backend-neutral."""
    out: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        meta = MetaData()
        meta.reflect(bind=conn)
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings().all()
            out[table.name] = [{k: _neutral(v) for k, v in r.items()} for r in rows]
    return out


def _neutral(value):
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return value


def fake_reembed(crops: list[StoredCrop]) -> np.ndarray:
    """A second model version's embedding of a stored crop: a fixed function of its bytes."""
    return np.stack([unit(np.random.default_rng(len(c.png) + c.png[-20])) for c in crops])


def populate(engine, cipher: TemplateCipher | None) -> dict:
    """People in clear and sealed, two model versions, a deleted person, keys and audit rows."""
    rng = np.random.default_rng(11)
    plain = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
    plain.load()
    people = {f"p{i}": make_enrolment(rng, f"p{i}") for i in range(4)}
    for pid in ("p0", "p1"):
        enroll(plain, people[pid])
    sessions = session_factory(engine, cipher)
    g = Gallery(sessions, FaceIndex(DIM), "m1")
    g.load()
    for pid in ("p2", "p3"):
        enroll(g, people[pid])
    m2 = SyncedGallery(sessions, FaceIndex(DIM), "m2", reembed=fake_reembed)
    m2.load()
    assert m2.backfill() == 4
    enroll(g, make_enrolment(rng, "gone"))  # the last embedding id handed out, then deleted
    g.delete("gone", audit.row(ADMIN, "delete"))
    keys = KeyStore(sessions)
    keys.create("door", {"verify"}, audit.row(ADMIN, "key_create"))
    audit.record(sessions, audit.row(ADMIN, "verify", person_id="p1", score=0.93, detail={"match": True}))
    return people


def test_round_trip_keeps_every_row_across_backends(engines, tmp_path):
    source, target = engines
    people = populate(source, TemplateCipher.from_setting(K1))
    before = rows_of(source)
    archive = tmp_path / "backup.zip"
    report = backup(source, tmp_path / "models", archive)
    assert report.rows["people"] == 4 and report.rows["embeddings"] == 8 and report.key_ids == ["k1"]
    assert report.missing_models == ["m1", "m2"]  # versions not in that models folder: named only
    result = restore(archive, target, tmp_path / "models", TemplateCipher.from_setting(K1))
    assert result.rows == report.rows
    after = rows_of(target)
    assert after == before  # every row, byte for byte: plain and sealed templates, keys, audit, log
    g = Gallery(session_factory(target, TemplateCipher.from_setting(K1)), FaceIndex(DIM), "m1")
    assert g.load() == 4
    for pid, e in people.items():
        assert g.crop(pid) == e.crop and g.search(e.vector, 1)[0].person_id == pid
    # ids keep growing past every id the source handed out, the deleted person's included
    max_embedding = max(r["id"] for r in before["embeddings"])
    record = enroll(g, make_enrolment(np.random.default_rng(12), "new"))
    with target.connect() as conn:
        new_id = conn.execute(text("SELECT max(id) FROM embeddings")).scalar()
        pk = conn.execute(text("SELECT id FROM people WHERE person_id = 'new'")).scalar()
    assert record.person_id == "new" and new_id > max_embedding + 1  # "gone"'s id is not reused
    assert pk > max(r["id"] for r in before["people"])


def test_backup_is_one_snapshot_while_the_gallery_writes(database_url, tmp_path):
    engine = make_engine(database_url)
    try:
        populate(engine, None)
        before = rows_of(engine)
        g = Gallery(session_factory(engine), FaceIndex(DIM), "m1")
        g.load()
        written = []

        def meanwhile(table: str, rows: int) -> None:
            if not written:  # after the first table: a whole enrolment commits elsewhere
                written.append(enroll(g, make_enrolment(np.random.default_rng(13), "late")))

        report = backup(engine, tmp_path / "models", tmp_path / "b.zip", on_table=meanwhile)
        assert written and rows_of(engine)["people"][-1]["person_id"] == "late"
        assert report.rows == {name: len(rows) for name, rows in before.items()}
        with zipfile.ZipFile(tmp_path / "b.zip") as zf:
            assert all(b'"late"' not in zf.read(n) for n in zf.namelist())
    finally:
        engine.dispose()


def test_restore_refuses_a_non_empty_target_unless_forced(database_url, tmp_path):
    source = make_engine(database_url)
    target_url = f"sqlite:///{tmp_path / 'target.db'}"
    target = make_engine(target_url)
    try:
        populate(source, None)
        backup(source, tmp_path / "models", tmp_path / "b.zip")
        g = Gallery(session_factory(target), FaceIndex(DIM), "m1")
        from service.gallery.db import migrate

        migrate(target)
        g.load()
        enroll(g, make_enrolment(np.random.default_rng(14), "already-here"))
        held = rows_of(target)
        with pytest.raises(BackupError, match=r"not empty \(.*people: 1.*--force"):
            restore(tmp_path / "b.zip", target, tmp_path / "models", TemplateCipher())
        assert rows_of(target) == held
        report = restore(tmp_path / "b.zip", target, tmp_path / "models", TemplateCipher(), force=True)
        assert report.replaced_rows > 0 and rows_of(target) == rows_of(source)
    finally:
        source.dispose()
        target.dispose()


def test_a_backup_of_an_older_schema_restores_into_a_newer_deployment(blank_database_url, tmp_path):
    """Taken at revision 0002, restored into a database already at head: rows go in at 0002 and
    are migrated like any 0002 gallery."""
    from service.gallery.db import current_revision, migrate

    source = make_engine(blank_database_url)
    target = make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    try:
        migrate(source, "0002")
        now = "2026-01-01 00:00:00"
        with source.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO people (id, person_id, name, created_at, updated_at) VALUES (1, 'a', 'A', :t, :t)"
                ),
                {"t": now},
            )
            conn.execute(
                text(
                    "INSERT INTO reference_crops (person_pk, image_png, width, height, meta, photo_sha256, "
                    "created_at, kind) VALUES (1, :png, 12, 14, '{}', :sha, :t, 'canvas')"
                ),
                {"png": make_enrolment(np.random.default_rng(16), "a").crop, "sha": "0" * 64, "t": now},
            )
        report = backup(source, tmp_path / "models", tmp_path / "old.zip")
        assert report.rows["people"] == 1
        migrate(target)  # a fresh deployment started once: at head, no rows
        restored = restore(tmp_path / "old.zip", target, tmp_path / "models", TemplateCipher())
        assert restored.schema_revision == "0002"
        head = current_revision(target)
        assert head is not None and head > "0002"
        with target.connect() as conn:
            assert conn.execute(text("SELECT person_id, name FROM people")).all() == [("a", "A")]
            assert conn.execute(text("SELECT kind FROM reference_crops")).scalar() == "canvas"
    finally:
        source.dispose()
        target.dispose()


def damaged_archives(good: Path, folder: Path) -> dict[str, Path]:
    data = good.read_bytes()
    out = {}
    out["truncated"] = folder / "truncated.zip"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["not a zip"] = folder / "text.zip"
    out["not a zip"].write_text("hello")
    # one byte of a table's stored data flipped (its CRC or deflate stream breaks)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("tables/reference_crops.jsonl")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    flipped = bytearray(data)
    flipped[start] ^= 0xFF
    out["flipped byte"] = folder / "flipped.zip"
    out["flipped byte"].write_bytes(bytes(flipped))
    # a consistent zip whose table no longer matches the manifest (a row edited)
    out["edited row"] = folder / "edited.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out["edited row"], "w") as dst:
        for item in src.infolist():
            body = src.read(item)
            if item.filename == "tables/people.jsonl":
                body = body.replace(b'"p1"', b'"px"')
            dst.writestr(item, body)
    out["missing"] = folder / "nowhere.zip"
    return out


def test_a_damaged_backup_is_refused_and_nothing_is_written(database_url, tmp_path):
    source = make_engine(database_url)
    try:
        populate(source, None)
        good = tmp_path / "good.zip"
        backup(source, tmp_path / "models", good)
    finally:
        source.dispose()
    for what, path in damaged_archives(good, tmp_path).items():
        target_file = tmp_path / f"target-{what.replace(' ', '-')}.db"
        target = make_engine(f"sqlite:///{target_file}")
        try:
            with pytest.raises(BackupError) as info:
                restore(path, target, tmp_path / "models", TemplateCipher())
        finally:
            target.dispose()
        message = str(info.value)
        assert str(path) in message, what
        assert not target_file.exists(), what  # the database was never even opened
        assert not (tmp_path / "models").exists(), what
    assert "truncated or corrupt" in _refusal(damaged_archives(good, tmp_path)["truncated"], tmp_path)
    assert "sha256" in _refusal(damaged_archives(good, tmp_path)["edited row"], tmp_path)


def _refusal(path: Path, tmp_path: Path) -> str:
    target = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        restore(path, target, tmp_path / "models", TemplateCipher())
    except BackupError as exc:
        return str(exc)
    finally:
        target.dispose()
    raise AssertionError("restored a damaged archive")


def test_encrypted_backup_needs_the_same_keys(database_url, tmp_path):
    source = make_engine(database_url)
    try:
        populate(source, TemplateCipher.from_setting(K1))
        backup(source, tmp_path / "models", tmp_path / "b.zip")
    finally:
        source.dispose()
    for configured in ("", new_key("k1"), new_key("k2")):
        target = make_engine(f"sqlite:///{tmp_path / 'target.db'}")
        try:
            with pytest.raises(BackupError, match="encrypted with key 'k1'.*FACEGATE_ENCRYPTION_KEYS"):
                restore(
                    tmp_path / "b.zip", target, tmp_path / "models", TemplateCipher.from_setting(configured)
                )
        finally:
            target.dispose()
        assert not (tmp_path / "target.db").exists()


def test_model_versions_in_use_travel_with_the_backup(database_url, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(SMALL_MODEL, models / "scratch")
    (models / "active.json").write_text(json.dumps({"version": "0.1.0", "previous": None}))
    engine = make_engine(database_url)
    try:
        g = Gallery(session_factory(engine), FaceIndex(128), "0.1.0")
        g.load()
        rng = np.random.default_rng(15)
        g.enroll("a", "A", make_enrolment(rng, "a").crop, {}, "0" * 64, unit(rng, 128))
        full = backup(engine, models, tmp_path / "full.zip")
        by_ref = backup(engine, models, tmp_path / "ref.zip", include_model_files=False)
    finally:
        engine.dispose()
    assert full.models == ["0.1.0"] and by_ref.models == ["0.1.0"]
    assert (tmp_path / "full.zip").stat().st_size > 4_000_000 > (tmp_path / "ref.zip").stat().st_size
    # into an empty models folder: the version's folder and active.json are written
    fresh = tmp_path / "fresh-models"
    fresh.mkdir()
    target = make_engine(f"sqlite:///{tmp_path / 't1.db'}")
    report = restore(tmp_path / "full.zip", target, fresh, TemplateCipher())
    target.dispose()
    assert report.models_written == ["scratch"]
    for name in ("model.json", "model.onnx", "metrics.csv"):
        assert (fresh / "scratch" / name).read_bytes() == (SMALL_MODEL / name).read_bytes()
    assert json.loads((fresh / "active.json").read_text())["version"] == "0.1.0"
    # by reference only: refused where the version is missing, accepted where it is present
    empty = tmp_path / "empty-models"
    empty.mkdir()
    target = make_engine(f"sqlite:///{tmp_path / 't2.db'}")
    with pytest.raises(BackupError, match="0.1.0.*holds only its reference"):
        restore(tmp_path / "ref.zip", target, empty, TemplateCipher())
    assert not (tmp_path / "t2.db").exists() and list(empty.iterdir()) == []
    assert restore(tmp_path / "ref.zip", target, fresh, TemplateCipher()).models_present == ["0.1.0"]
    target.dispose()
    # a models folder holding that version with other weights is refused
    other = tmp_path / "other-models"
    shutil.copytree(SMALL_MODEL, other / "scratch")
    card = json.loads((other / "scratch" / "model.json").read_text())
    (other / "scratch" / "model.onnx").write_bytes(b"other weights")
    card["sha256"] = __import__("hashlib").sha256(b"other weights").hexdigest()
    (other / "scratch" / "model.json").write_text(json.dumps(card))
    target = make_engine(f"sqlite:///{tmp_path / 't3.db'}")
    with pytest.raises(BackupError, match="the embeddings would not match"):
        restore(tmp_path / "full.zip", target, other, TemplateCipher())
    target.dispose()


# ---- the whole deployment: a restored service identifies everyone again ----


def cli(monkeypatch, tmp_path: Path, url: str, *args: str):
    from service.cli import app
    from service.settings import get_settings

    monkeypatch.setenv("FACEGATE_DATABASE_URL", url)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FACEGATE_ENCRYPTION_KEYS", K1)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()


def started(url: str, tmp_path: Path) -> TestClient:
    settings = Settings(database_url=url, data_dir=tmp_path / "var", admin_key=ADMIN_KEY, encryption_keys=K1)
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return client


def identify(client: TestClient, photo: Path) -> dict:
    r = client.post("/identify", files={"image": ("p.jpg", photo.read_bytes())})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.lfw
@pytest.mark.skipif(not models_available(), reason="the shipped models are missing")
def test_restored_service_identifies_every_person(
    database_url, other_blank_url, tmp_path, lfw_people, monkeypatch
):
    people = lfw_people[:8]
    source = started(database_url, tmp_path)
    try:
        for i, folder in enumerate(people):
            photo = sorted(folder.glob("*.jpg"))[0]
            r = source.post(
                "/enroll",
                files={"image": ("a.jpg", photo.read_bytes())},
                data={"person_id": f"lfw{i}", "name": folder.name, "face_selection": "largest"},
            )
            assert r.status_code == 201, r.text
        seconds = {i: identify(source, sorted(f.glob("*.jpg"))[1]) for i, f in enumerate(people)}
    finally:
        source.__exit__(None, None, None)
    archive = tmp_path / "deployment.zip"
    made = cli(monkeypatch, tmp_path, database_url, "backup", str(archive))
    assert made.exit_code == 0, made.output
    assert "people 8" in made.output and "restoring needs them" in made.output
    done = cli(monkeypatch, tmp_path, other_blank_url, "restore", str(archive))
    assert done.exit_code == 0, done.output
    assert "removed 1 index snapshots" in done.output  # the source's, saved at its shutdown
    again = cli(monkeypatch, tmp_path, other_blank_url, "restore", str(archive))
    assert again.exit_code == 1 and "not empty" in again.output
    restored = started(other_blank_url, tmp_path)
    try:
        assert restored.app.state.facegate.lifecycle.started_from.reason == "missing"  # rebuilt
        assert restored.get("/people?limit=100").json()["total"] == 8
        for i, folder in enumerate(people):
            first = identify(restored, sorted(folder.glob("*.jpg"))[0])
            assert first["result"] == "match" and first["person"]["person_id"] == f"lfw{i}"
            second = identify(restored, sorted(folder.glob("*.jpg"))[1])
            assert second["result"] == seconds[i]["result"]
            assert second["score"] == pytest.approx(seconds[i]["score"], abs=1e-6)
            assert (second["person"] or {}).get("person_id") == (seconds[i]["person"] or {}).get("person_id")
        assert restored.get("/keys").status_code == 200  # the admin key came back (hashed) too
    finally:
        restored.__exit__(None, None, None)
