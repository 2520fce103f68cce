"""Shared fixtures: a fresh migrated database per test (SQLite and PostgreSQL) and the LFW folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "FACEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def data_dir() -> Path:
    return Path(os.environ.get("FACEGATE_DATA", REPO.parent / "shared" / "data"))


def _postgres_reason() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip
        return f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}); set FACEGATE_TEST_POSTGRES_URL"
    return None


_PG_REASON: list[str | None] = []


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL; on PostgreSQL a throw-away database created for the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gallery.db'}"
        return
    if not _PG_REASON:
        _PG_REASON.append(_postgres_reason())
    if _PG_REASON[0]:
        pytest.skip(_PG_REASON[0])
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    path = data_dir() / "lfw"
    if not (path / "images").is_dir():
        pytest.skip(f"LFW data not found at {path}; set FACEGATE_DATA to the folder holding lfw/")
    return path
