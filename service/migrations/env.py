"""Alembic environment: runs against the engine handed over by ``service.gallery.db.migrate``.

The migration transaction holds the gallery write lock, so replicas starting at the same time
migrate one after the other instead of racing to create the same tables.
"""

from __future__ import annotations

from alembic import context

from service.gallery.db import WRITE_OPTION, lock_for_writing, make_engine
from service.gallery.tables import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no engine or sqlalchemy.url given to the migrations")
        engine = make_engine(url)
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            lock_for_writing(connection)
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()


run()
