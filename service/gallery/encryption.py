"""The database's encrypted templates as a whole: which keys sealed them, the start-up key check,
and re-encryption under the newest key in batches while the service runs.

The crypto itself is ``service.gallery.cipher``; this module only finds rows by the envelope's
first bytes (``cipher.prefix``), in SQL, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import LargeBinary, case, func, literal, select, update
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
    keys: tuple[InstrumentedAttribute, ...]  # primary key columns, in order

    def open(self, c: TemplateCipher, row) -> bytes:
        if self.name == "crops":
            return c.open_crop(row.blob, row.person_pk)
        return c.open_vector(row.blob, row.person_pk, row.model_version)

    def seal(self, c: TemplateCipher, row, plain: bytes) -> bytes:
        if self.name == "crops":
            return c.seal_crop(plain, row.person_pk)
        return c.seal_vector(plain, row.person_pk, row.model_version)


TARGETS = (
    Target("crops", ReferenceCrop.image_png, (ReferenceCrop.person_pk,)),
    Target("embeddings", Embedding.vector, (Embedding.id, Embedding.person_pk, Embedding.model_version)),
)


def _head(column: InstrumentedAttribute, n: int):
    return func.substr(column, 1, n, type_=LargeBinary)


def _key_id_expr(column: InstrumentedAttribute):
    """The envelope's key id bytes, NULL for a plain value."""
    is_sealed = _head(column, len(cipher.HEADER)) == literal(cipher.HEADER, LargeBinary)
    return case(
        (is_sealed, func.substr(column, len(cipher.HEADER) + 1, cipher.KEY_ID_BYTES, type_=LargeBinary))
    )


@dataclass
class Census:
    """Rows per key id (``PLAIN_ROWS`` for values in clear), per target."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def key_ids(self) -> set[str]:
        return {k for per in self.counts.values() for k in per if k != PLAIN_ROWS}

    def plain(self) -> int:
        return sum(per.get(PLAIN_ROWS, 0) for per in self.counts.values())

    def rows_with(self, key_id: str) -> int:
        return sum(per.get(key_id, 0) for per in self.counts.values())


def census(s: Session) -> Census:
    out = Census()
    for t in TARGETS:
        kid = _key_id_expr(t.blob).label("kid")
        per: dict[str, int] = {}
        for raw, n in s.execute(select(kid, func.count()).group_by(kid)):
            name = PLAIN_ROWS if raw is None else bytes(raw).rstrip(b"\0").decode("ascii", "replace")
            per[name] = per.get(name, 0) + int(n)
        out.counts[t.name] = per
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
        for kid in sorted(found.key_ids()):
            for t in TARGETS:
                row = s.execute(
                    select(t.blob.label("blob"), *t.keys)
                    .where(_head(t.blob, cipher.PREFIX_BYTES) == literal(cipher.prefix(kid), LargeBinary))
                    .limit(1)
                ).first()
                if row is not None:
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
    seconds: float = 0.0


def rotate(
    sessions: sessionmaker[Session],
    batch: int = 200,
    pause: float = 0.05,
    progress: Callable[[str, int], None] | None = None,
) -> RotateReport:
    """Re-seal every template that is in clear or sealed with an older key under the newest key.

    Each batch is one write transaction (the gallery's write lock), so an enrolment replacing a
    crop waits for at most one batch and is never overwritten with its old value; ``pause``
    seconds between batches let waiting writers in. Rows keep their timestamps and no change-log
    row is written: what they hold is unchanged. Rows written meanwhile by a replica still on an
    older key are picked up by a later batch. Safe to interrupt and run again."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    report = RotateReport()
    started = time.perf_counter()
    with sessions() as s:
        if not cipher.of(s).enabled:
            raise TemplateKeyError(f"{cipher.SETTING} is not set: there is no key to encrypt with")
    for t in TARGETS:
        done = 0
        while True:
            with write_session(sessions) as s:
                c = cipher.of(s)
                newest = literal(cipher.prefix(c.write_key or ""), LargeBinary)
                rows = s.execute(
                    select(t.blob.label("blob"), *t.keys)
                    .where(_head(t.blob, cipher.PREFIX_BYTES) != newest)
                    .order_by(*t.keys)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                for row in rows:
                    sealed = t.seal(c, row, t.open(c, row))
                    where = [col == getattr(row, col.key) for col in t.keys]
                    s.execute(update(t.blob.class_).where(*where).values({t.blob.key: sealed}))
                s.commit()
            done += len(rows)
            report.batches += 1
            if progress is not None:
                progress(t.name, done)
            if pause:
                time.sleep(pause)
        report.rewritten[t.name] = done
    report.seconds = time.perf_counter() - started
    log.info("templates re-encrypted under the newest key: %s", report.rewritten)
    return report
