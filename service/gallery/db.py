"""Database engine, sessions, write transactions and the Alembic migrations packaged with the service."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from service.gallery.cipher import INFO_KEY, PLAIN, TemplateCipher

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Execution option naming a transaction that will write: SQLite then starts it with BEGIN IMMEDIATE.
WRITE_OPTION = "facegate_write"
# Key of the PostgreSQL advisory lock that serialises gallery writes (and migrations) across processes.
WRITE_LOCK_KEY = 0x4647_0001
SQLITE_BUSY_MS = 30_000
_MIGRATING = threading.Lock()


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whichever spelling of the URL was given."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours (see _begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another connection wrote in between (busy_timeout cannot help); writers
        # therefore take the write lock up front and wait for it.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def make_engine(url: str) -> Engine:
    """An engine for a SQLite file (folder created, WAL, foreign keys) or PostgreSQL (psycopg 3)."""
    url = normalise_url(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend != "postgresql":
        raise ValueError(f"unsupported database {backend!r}; valid: sqlite, postgresql")
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args={"connect_timeout": 10}
    )


def session_factory(engine: Engine, cipher: TemplateCipher | None = None) -> sessionmaker[Session]:
    """Sessions on ``engine``; ``cipher`` (``service.gallery.cipher``) seals and opens the stored
    templates of every session made here (none: they are written in clear)."""
    return sessionmaker(engine, expire_on_commit=False, info={INFO_KEY: cipher or PLAIN})


def lock_for_writing(conn: Connection) -> None:
    """Hold the database-wide gallery write lock until the transaction ends (PostgreSQL; on SQLite
    a write transaction's BEGIN IMMEDIATE already holds it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction holds the write lock from its first statement.

    Gallery writes thus run one at a time across every process sharing the database, so a
    person_id is never inserted twice and ``change_log`` ids grow in commit order (what a replica
    following the log relies on). The caller commits; leaving the block rolls back what is left.
    """
    with sessions() as s:
        lock_for_writing(s.connection(execution_options={WRITE_OPTION: True}))
        yield s


def alembic_config(engine: Engine) -> Config:
    """Alembic configured in code: works from an installed wheel and from any working directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent). Concurrent callers wait for each other:
    threads on a lock here (Alembic's context is process-global), processes on the database."""
    with _MIGRATING:
        command.upgrade(alembic_config(engine), revision)
    log.debug("database at revision %s", revision)


def downgrade(engine: Engine, revision: str) -> None:
    with _MIGRATING:
        command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision, None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
