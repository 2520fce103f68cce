"""Alembic migrations: upgrade from empty, match the ORM, downgrade, run from anywhere, concurrently."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from service.gallery.db import current_revision, downgrade, make_engine, migrate, normalise_url
from service.gallery.tables import Base

REPO = Path(__file__).resolve().parents[2]
MIGRATE_AT = """
import sys, time
from service.gallery.db import make_engine, migrate
engine = make_engine(sys.argv[1])
with engine.connect():
    pass
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
migrate(engine)
"""
TABLES = {
    "people",
    "reference_crops",
    "embeddings",
    "api_keys",
    "audit",
    "change_log",
    "liveness_challenges",
    "liveness_tokens",
    "collections",
    "collection_members",
}
HEAD = "0005"


def test_upgrade_from_empty_then_downgrade_and_upgrade_again(blank_database_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the migrations are found from the package, not the working directory
    engine = make_engine(blank_database_url)
    assert current_revision(engine) is None and inspect(engine).get_table_names() == []
    migrate(engine)
    assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(engine) == HEAD
    migrate(engine)  # idempotent
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(engine) is None
    migrate(engine)
    assert current_revision(engine) == HEAD
    engine.dispose()


def test_migrated_schema_matches_the_orm(database_url):
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_replicas_migrating_at_once_do_not_collide(blank_database_url):
    """Three processes (replicas starting together) and three threads migrate one database."""
    start_at = str(time.time() + 3)  # the processes import first, then start together
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT, blank_database_url, start_at], cwd=REPO, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    engines = [make_engine(blank_database_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine) -> None:
        try:
            time.sleep(max(0.0, float(start_at) - time.time()))
            migrate(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [p.communicate(timeout=120)[1].decode()[-2000:] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], failures
    assert not errors, errors
    assert all(current_revision(e) == HEAD for e in engines)
    for e in engines:
        e.dispose()


def test_postgres_urls_use_psycopg3():
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_engine_creates_the_folder_and_enables_wal_and_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'gallery.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    assert (tmp_path / "a" / "b" / "gallery.db").is_file()
    engine.dispose()


def test_crops_stored_before_0002_become_chips_and_survive_a_downgrade(blank_database_url):
    """Rows written at revision 0001 (the enrolling model's own crop) are marked ``chip``; new
    rows may be ``canvas``; any other kind is refused; downgrading keeps the rows."""
    engine = make_engine(blank_database_url)
    migrate(engine, "0001")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO people (id, person_id, name, created_at, updated_at) VALUES (1, 'old', 'Old', :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO reference_crops (person_pk, image_png, width, height, meta, photo_sha256, created_at) "
                "VALUES (1, :png, 150, 150, '{}', :sha, :t)"
            ),
            {"png": b"png", "sha": "0" * 64, "t": now},
        )
    migrate(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT kind FROM reference_crops")).scalar() == "chip"
        conn.execute(
            text(
                "INSERT INTO people (id, person_id, name, created_at, updated_at) VALUES (2, 'new', 'New', :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO reference_crops (person_pk, image_png, width, height, meta, photo_sha256, created_at, kind) "
                "VALUES (2, :png, 288, 288, '{}', :sha, :t, 'canvas')"
            ),
            {"png": b"png", "sha": "1" * 64, "t": now},
        )
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE reference_crops SET kind = 'photo' WHERE person_pk = 2"))
    downgrade(engine, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reference_crops")).scalar() == 2
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind FROM reference_crops ORDER BY person_pk")).scalars().all() == [
            "chip",
            "chip",
        ]
    engine.dispose()
