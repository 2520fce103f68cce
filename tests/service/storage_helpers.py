"""Helpers for the storage tests: a gallery on a fresh database, enrolment data, table snapshots."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from service.gallery.db import make_engine, session_factory
from service.gallery.gallery import Gallery
from service.index import FaceIndex

DIM = 16


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def png(rng: np.random.Generator, size: tuple[int, int] = (12, 14)) -> bytes:
    """A small random RGB PNG of (width, height)."""
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Enrolment:
    person_id: str | None
    name: str
    crop: bytes
    meta: dict
    sha: str
    vector: np.ndarray


def make_enrolment(rng: np.random.Generator, person_id: str | None, name: str | None = None) -> Enrolment:
    return Enrolment(
        person_id=person_id,
        name=name or f"Name of {person_id}",
        crop=png(rng),
        meta={"face": {"box": [1, 2, 3, 4], "score": 0.99}, "quality": {"sharpness": 40.0}},
        sha=f"{int(rng.integers(0, 2**62)):064x}",
        vector=unit(rng),
    )


def enroll(g: Gallery, e: Enrolment, replace: bool = False):
    return g.enroll(e.person_id, e.name, e.crop, e.meta, e.sha, e.vector, replace=replace)


def new_gallery(gallery: Gallery, model_version: str | None = None) -> Gallery:
    """Another Gallery (as after a restart) on the same database."""
    return Gallery(
        gallery.session_factory, FaceIndex(gallery.index.dim), model_version or gallery.model_version
    )


def snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table, sorted: compared before and after an operation."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            out[table] = sorted((tuple(map(_plain, r)) for r in rows), key=repr)
    return out


def _plain(value):
    return bytes(value) if isinstance(value, memoryview) else value


def db_index_state(gallery: Gallery) -> dict[int, tuple[str, np.ndarray]]:
    """{embedding id: (person_id, vector)} for the gallery's model version, from the database."""
    with gallery.session_factory() as s:
        rows = s.execute(
            text(
                "SELECT e.id, p.person_id, e.vector FROM embeddings e JOIN people p ON p.id = e.person_pk "
                "WHERE e.model_version = :v"
            ),
            {"v": gallery.model_version},
        ).all()
    return {r[0]: (r[1], np.frombuffer(bytes(r[2]), np.float32)) for r in rows}


def assert_index_equals_database(gallery: Gallery) -> None:
    """The index holds exactly the database's embeddings, each with the stored vector."""
    assert gallery.consistency_check()
    db = db_index_state(gallery)
    assert gallery.index.ids() == set(db) and len(gallery.index) == len(db)
    for eid, (pid, vector) in db.items():
        assert np.array_equal(gallery.index.vector(eid), vector)
        assert np.array_equal(gallery.embedding_of(pid), vector)
    assert gallery.size() == len({pid for pid, _ in db.values()})


def replica_pair(sessions, model_version: str = "v1"):
    """Two loaded replicas on one database (``a`` writes, ``b`` reads) and the replicator that
    brings ``b`` up to date when polled (``interval=0``: only when the test polls it)."""
    from service.gallery.synced import SyncedGallery
    from service.replication import ChangeFeed, Replicator

    a = SyncedGallery(sessions, FaceIndex(DIM), model_version)
    b = SyncedGallery(sessions, FaceIndex(DIM), model_version)
    a.load()
    b.load()
    feed = ChangeFeed(sessions)
    return a, b, Replicator(feed, b.refresh, interval=0, position=feed.position())


@contextmanager
def empty_gallery(database_url: str, model_version: str = "m1") -> Iterator[Gallery]:
    """A loaded, empty gallery on ``database_url`` (the ``database_url`` fixture's fresh database)."""
    engine = make_engine(database_url)
    g = Gallery(session_factory(engine), FaceIndex(DIM), model_version)
    assert g.load() == 0
    try:
        yield g
    finally:
        engine.dispose()
