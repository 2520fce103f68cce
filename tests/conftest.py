"""Shared fixtures: fresh databases (SQLite and PostgreSQL) and the LFW folder.

``database_url`` yields the URL of a fresh, migrated, empty database, once per backend (test ids
``[sqlite]`` and ``[postgres]``); ``blank_database_url`` the same without the migration. The
PostgreSQL server comes from FACEGATE_TEST_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test); each test gets its own database, dropped
afterwards. The PostgreSQL cases skip, saying why, when the server cannot be reached, and carry
the ``postgres`` marker (deselect with ``-m "not postgres"``).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "FACEGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def data_dir() -> Path:
    from training.paths import paths

    return paths().data


@pytest.fixture(autouse=True)
def _fresh_training_paths() -> Iterator[None]:
    """training.paths caches the environment it read; a test that sets FACEGATE_* sees its own."""
    from training.paths import paths

    paths.cache_clear()
    yield
    paths.cache_clear()


@functools.cache
def postgres_unavailable() -> str | None:
    """Why the PostgreSQL test server cannot be used, or None when it can (asked once per run)."""
    from service.gallery.db import normalise_url

    try:
        engine = create_engine(normalise_url(POSTGRES_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means: skip, with the reason
        return (
            f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
            "start it or set FACEGATE_TEST_POSTGRES_URL"
        )
    return None


@pytest.fixture(params=BACKENDS)
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database without any table: a SQLite file, or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gallery.db'}"
        return
    yield from throwaway_postgres_database()


def throwaway_postgres_database() -> Iterator[str]:
    """For a fixture: the URL of a new, empty PostgreSQL database, dropped afterwards (skips,
    saying why, when the server cannot be reached)."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    from service.gallery.db import normalise_url

    server = make_url(normalise_url(POSTGRES_URL))
    name = f"fg_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(blank_database_url: str) -> str:
    """A fresh database migrated to the latest schema, with no rows."""
    from service.gallery.db import make_engine, migrate

    engine = make_engine(blank_database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return blank_database_url


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW folder (holding images/ and pairs.txt); skips when absent."""
    path = data_dir() / "lfw"
    if not (path / "images").is_dir():
        pytest.skip(f"LFW data not found at {path}; set FACEGATE_DATA")
    return path
