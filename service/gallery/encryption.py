"""The database's encrypted templates as a whole: which keys sealed them, the start-up key check,
and re-encryption under the newest key in batches while the service runs.

The crypto itself is ``service.gallery.cipher``. Which key sealed a row is in the first bytes of
its blob (``cipher.prefix``); they are read without reading a whole crop (~90 KiB): SQLite's
incremental blob I/O there (its ``substr`` would load the blob), ``substr`` on PostgreSQL (a
slice of the TOAST value) and for the small embeddings.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import LargeBinary, bindparam, func, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from service.gallery import cipher
from service.gallery.cipher import TemplateCipher, TemplateKeyError
from service.gallery.db import write_session
from service.gallery.tables import Embedding, ReferenceCrop

log = logging.getLogger(__name__)

PLAIN_ROWS = "(plain)"


@dataclass(frozen=True)
class Target:
    """One blob column holding templates, and how a row's associated data is made."""

    name: str
    blob: InstrumentedAttribute
    keys: tuple[InstrumentedAttribute, ...]  # keys[0] identifies the row; all make its context
    large: bool  # values of ~100 KiB: SQLite reads their first bytes with incremental blob I/O

    def open(self, c: TemplateCipher, row) -> bytes:
        if self.name == "crops":
            return c.open_crop(row.blob, row.person_pk)
        return c.open_vector(row.blob, row.person_pk, row.model_version)

    def seal(self, c: TemplateCipher, row, plain: bytes) -> bytes:
        if self.name == "crops":
            return c.seal_crop(plain, row.person_pk)
        return c.seal_vector(plain, row.person_pk, row.model_version)

    def rows(self, s: Session, ids: list[int]):
        key = self.keys[0]
        return s.execute(select(self.blob.label("blob"), *self.keys).where(key.in_(ids)).order_by(key)).all()


TARGETS = (
    Target("crops", ReferenceCrop.image_png, (ReferenceCrop.person_pk,), large=True),
    Target(
        "embeddings",
        Embedding.vector,
        (Embedding.id, Embedding.person_pk, Embedding.model_version),
        large=False,
    ),
)


def heads(s: Session, t: Target) -> Iterator[tuple[int, bytes]]:
    """(row id, first ``cipher.PREFIX_BYTES`` bytes of its blob) for every row of ``t``."""
    table, column, key = t.blob.class_.__tablename__, t.blob.key, t.keys[0]
    conn = s.connection()
    blobopen = getattr(conn.connection.driver_connection, "blobopen", None)  # sqlite3, Python 3.11+
    if t.large and conn.dialect.name == "sqlite" and blobopen is not None:
        for rowid, pk in conn.execute(text(f"SELECT rowid, {key.key} FROM {table}")).all():
            with blobopen(table, column, rowid, readonly=True) as blob:
                yield int(pk), blob.read(cipher.PREFIX_BYTES)
        return
    head = func.substr(t.blob, 1, cipher.PREFIX_BYTES, type_=LargeBinary)
    for pk, data in s.execute(select(key, head)):
        yield int(pk), bytes(data or b"")


def key_name(head: bytes) -> str:
    return cipher.key_id_of(head) or PLAIN_ROWS


@dataclass
class Census:
    """Rows per key id (``PLAIN_ROWS`` for values in clear), per target, and one row id of each."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sample: dict[str, dict[str, int]] = field(default_factory=dict)

    def key_ids(self) -> set[str]:
        return {k for per in self.counts.values() for k in per if k != PLAIN_ROWS}

    def plain(self) -> int:
        return sum(per.get(PLAIN_ROWS, 0) for per in self.counts.values())

    def rows_with(self, key_id: str) -> int:
        return sum(per.get(key_id, 0) for per in self.counts.values())

    def not_under(self, key_id: str | None) -> int:
        return sum(n for per in self.counts.values() for k, n in per.items() if k != key_id)


def census(s: Session) -> Census:
    out = Census()
    for t in TARGETS:
        counts: Counter[bytes] = Counter()
        sample: dict[bytes, int] = {}
        for pk, head in heads(s, t):
            prefix = head if head.startswith(cipher.HEADER) else b""  # b"": in clear
            counts[prefix] += 1
            sample.setdefault(prefix, pk)
        out.counts[t.name] = {key_name(k): n for k, n in counts.items()}
        out.sample[t.name] = {key_name(k): pk for k, pk in sample.items()}
    return out


def check_keys(sessions: sessionmaker[Session]) -> Census:
    """Refuse to go on (TemplateKeyError) unless every stored template opens with the sessions'
    cipher: each key id found must be configured, and one row sealed with it must open (a wrong
    key under the right id). Values in clear are only logged."""
    with sessions() as s:
        c = cipher.of(s)
        found = census(s)
        missing = sorted(found.key_ids() - set(c.key_ids))
        if missing:
            listed = ", ".join(c.key_ids) or "none: encryption is off"
            detail = "; ".join(f"{k!r} ({found.rows_with(k)} rows)" for k in missing)
            raise TemplateKeyError(
                f"the database holds reference crops or embeddings encrypted with key {detail}, which "
                f"{cipher.SETTING} does not list (it lists: {listed}). Configure the key(s) the "
                "database was written with; FaceGate does not start without them."
            )
        for t in TARGETS:
            for kid, pk in sorted(found.sample[t.name].items()):
                if kid == PLAIN_ROWS:
                    continue
                for row in t.rows(s, [pk]):
                    try:
                        t.open(c, row)
                    except TemplateKeyError as exc:
                        raise TemplateKeyError(f"{exc}. FaceGate does not start with a wrong key.") from None
    if c.enabled and found.plain():
        log.warning(
            "%d reference crops and embeddings are stored in clear; `facegate encryption rotate` seals them",
            found.plain(),
        )
    return found


@dataclass
class RotateReport:
    rewritten: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    passes: int = 0
    remaining: int = 0  # rows still not under the newest key (written meanwhile under an older one)
    seconds: float = 0.0


def _rotate_pass(
    sessions: sessionmaker[Session],
    t: Target,
    batch: int,
    pause: float,
    report: RotateReport,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Rewrite the rows of ``t`` not under the newest key, ``batch`` at a time, each batch read
    again and rewritten under the write lock."""
    with sessions() as s:
        newest = cipher.prefix(cipher.of(s).write_key or "")
        todo = [pk for pk, head in heads(s, t) if head != newest]
    key = t.keys[0]
    table = t.blob.class_.__table__
    rewrite = (
        update(table).where(table.c[key.key] == bindparam("b_key")).values({t.blob.key: bindparam("b_blob")})
    )
    for i in range(0, len(todo), batch):
        with write_session(sessions) as s:
            c = cipher.of(s)
            values = [
                {"b_key": getattr(r, key.key), "b_blob": t.seal(c, r, t.open(c, r))}
                for r in t.rows(s, todo[i : i + batch])
                if c.needs_rotation(r.blob)  # re-checked under the lock: it may have been rewritten
            ]
            if values:
                s.execute(rewrite, values)
                s.commit()
        report.batches += 1
        report.rewritten[t.name] += len(values)
        if progress is not None:
            progress(t.name, report.rewritten[t.name])
        if pause:
            time.sleep(pause)


def rotate(
    sessions: sessionmaker[Session],
    batch: int = 200,
    pause: float = 0.05,
    progress: Callable[[str, int], None] | None = None,
    max_passes: int = 3,
) -> RotateReport:
    """Re-seal every template that is in clear or sealed with an older key under the newest key.

    Each batch is one write transaction (the gallery's write lock), so an enrolment replacing a
    crop waits for at most one batch and is never overwritten with its old value; ``pause``
    seconds between batches let waiting writers in. Rows keep their timestamps and no change-log
    row is written: what they hold is unchanged. Rows written meanwhile by a replica still on an
    older key are caught by another pass (up to ``max_passes``; ``remaining`` counts what is
    left). Safe to interrupt and run again."""
    if batch < 1 or max_passes < 1:
        raise ValueError("batch and max_passes must be at least 1")
    report = RotateReport(rewritten={t.name: 0 for t in TARGETS})
    started = time.perf_counter()
    with sessions() as s:
        newest = cipher.of(s).write_key
        if newest is None:
            raise TemplateKeyError(f"{cipher.SETTING} is not set: there is no key to encrypt with")
        report.remaining = census(s).not_under(newest)
    while report.remaining and report.passes < max_passes:
        for t in TARGETS:
            _rotate_pass(sessions, t, batch, pause, report, progress)
        report.passes += 1
        with sessions() as s:
            report.remaining = census(s).not_under(newest)
    report.seconds = time.perf_counter() - started
    if report.remaining:
        log.warning("%d templates are still not under the newest key: run rotate again", report.remaining)
    log.info("templates re-encrypted under the newest key %s: %s", newest, report.rewritten)
    return report
