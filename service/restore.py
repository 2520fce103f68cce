"""Restore a backup (``service.backup``) into an empty deployment, on SQLite or PostgreSQL.

1. The archive is checked whole before anything is written: the manifest, the sha256 of every
   member, every row's JSON and the row counts, the schema revision (known to this FaceGate), the
   model versions against the target's models folder, and the encryption keys (every key id that
   sealed a template is configured, and opens one of its rows). A truncated or altered archive
   stops here with a BackupError and nothing is written.
2. The target database must be empty (``force`` deletes what it holds, in the same transaction
   that restores). It is brought to the backup's schema revision, every row is inserted with its
   id in one write transaction, the id generators are moved past every id the source had handed
   out, and the schema is then upgraded to this FaceGate's head.
3. Model version folders missing from the target's models folder are written from the archive
   (staged and renamed into place), and ``active.json`` is restored.

Templates are copied as stored: encrypted ones need the same FACEGATE_ENCRYPTION_KEYS. No service
may run on the target while it is restored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import JSON, MetaData, Table, delete, func, select, text
from sqlalchemy.engine import Connection, Engine

from service.backup import (
    CHUNK,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    SKIP_TABLES,
    TEMPLATE_COLUMNS,
    BackupError,
    decode,
    reflect,
)
from service.gallery import cipher
from service.gallery.cipher import TemplateCipher, TemplateKeyError
from service.gallery.db import (
    WRITE_OPTION,
    alembic_config,
    current_revision,
    downgrade,
    lock_for_writing,
    migrate,
)
from service.model_card import load_card
from service.model_registry import ACTIVE_FILE, scan

log = logging.getLogger(__name__)
BATCH = 500


@dataclass
class RestoreReport:
    rows: dict[str, int] = field(default_factory=dict)
    models_written: list[str] = field(default_factory=list)
    models_present: list[str] = field(default_factory=list)
    schema_revision: str = ""
    replaced_rows: int = 0


# ---- reading and checking the archive ----


class Archive:
    """An opened backup whose members were all checked against the manifest."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.zf = zipfile.ZipFile(self.path)
            self.manifest = json.loads(self.zf.read(MANIFEST))
        except FileNotFoundError:
            raise BackupError(f"{self.path}: no such file") from None
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise BackupError(
                f"{self.path} is not a readable FaceGate backup (truncated or corrupt: {exc})"
            ) from None
        except KeyError:
            raise BackupError(f"{self.path} has no {MANIFEST}: not a FaceGate backup") from None
        except ValueError as exc:
            raise BackupError(f"{self.path}: its {MANIFEST} is not valid JSON ({exc})") from None
        m = self.manifest
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BackupError(f"{self.path} is not a FaceGate backup")
        if m.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"{self.path} has backup format {m.get('format_version')}; this FaceGate reads {FORMAT_VERSION}"
            )

    def close(self) -> None:
        self.zf.close()

    def open_member(self, member: str):
        try:
            return self.zf.open(member)
        except KeyError:
            raise BackupError(f"{self.path}: member {member} listed in the manifest is missing") from None

    def verify_members(self) -> None:
        for member, digest in self.manifest["members"].items():
            h = hashlib.sha256()
            try:
                with self.open_member(member) as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # bad CRC, truncated data
                raise BackupError(f"{self.path}: {member} is corrupt ({exc})") from None
            if h.hexdigest() != digest:
                raise BackupError(f"{self.path}: {member} does not match its sha256 in the manifest")

    def rows(self, table: dict) -> Iterator[dict[str, Any]]:
        """The table's rows decoded to Python values (binary, datetime), checked against its columns."""
        kinds = dict(table["columns"])
        with self.open_member(table["member"]) as f:
            for n, line in enumerate(f, 1):
                try:
                    raw = json.loads(line)
                    if not isinstance(raw, dict) or set(raw) != set(kinds):
                        raise ValueError("the columns differ from the manifest's")
                    yield {k: decode(kinds[k], v) for k, v in raw.items()}
                except (ValueError, TypeError) as exc:
                    raise BackupError(f"{self.path}: {table['member']} line {n}: {exc}") from None

    def check_rows(self, keys: TemplateCipher) -> None:
        """Every row decodes, the counts match, and every sealed template's key opens it."""
        samples: dict[str, tuple[str, dict]] = {}
        for table in self.manifest["tables"]:
            column = TEMPLATE_COLUMNS.get(table["name"])
            count = 0
            for row in self.rows(table):
                count += 1
                if column is not None and row.get(column) is not None:
                    kid = cipher.key_id_of(row[column])
                    if kid is not None and kid not in samples:
                        samples[kid] = (table["name"], row)
            if count != table["rows"]:
                raise BackupError(
                    f"{self.path}: {table['member']} holds {count} rows, the manifest says {table['rows']}"
                )
        for kid, (name, row) in sorted(samples.items()):
            try:
                if name == "reference_crops":
                    keys.open_crop(row["image_png"], row["person_pk"])
                else:
                    keys.open_vector(row["vector"], row["person_pk"], row["model_version"])
            except TemplateKeyError as exc:
                raise BackupError(
                    f"the backup's templates are encrypted with key {kid!r} and cannot be restored with "
                    f"the configured keys: {exc}. Configure FACEGATE_ENCRYPTION_KEYS as on the source."
                ) from None


def check_revision(engine: Engine, revision: str) -> None:
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    try:
        scripts.get_revision(revision)
    except Exception:  # alembic raises several kinds for an unknown revision
        raise BackupError(
            f"the backup is at schema revision {revision!r}, which this FaceGate does not know "
            "(it was taken by a newer version): restore it with that version or a later one"
        ) from None


# ---- models ----


def check_models(archive: Archive, models_dir: Path) -> list[dict]:
    """The model entries to write into ``models_dir``; refuses a version present there with other
    weights, or missing there while the archive holds only its reference."""
    present = scan(models_dir)
    todo = []
    for e in archive.manifest.get("models", []):
        if e.get("missing"):
            log.warning("model version %s was not in the source's models folder either", e["version"])
            continue
        there = present.get(e["version"])
        if there is not None:
            if there.card.sha256 != e["sha256"]:
                raise BackupError(
                    f"model version {e['version']} in {there.folder} has sha256 {there.card.sha256}, the "
                    f"backup's has {e['sha256']}: the embeddings would not match; move that folder away"
                )
            continue
        if not archive.manifest.get("model_files_included"):
            raise BackupError(
                f"model version {e['version']} (model file sha256 {e['sha256']}) is not in {models_dir} "
                "and the backup holds only its reference: put that version's folder there first"
            )
        todo.append(e)
    return todo


def write_model(archive: Archive, models_dir: Path, e: dict) -> Path:
    name = e["folder"] if not (models_dir / e["folder"]).exists() else f"{e['folder']}-{uuid.uuid4().hex[:6]}"
    staging = models_dir / f".staging-restore-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        for rel, digest in e["files"].items():
            target = staging / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise BackupError(f"model file path {rel!r} leaves its folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open_member(f"objects/{digest}") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
        (staging / "model.json").write_bytes(archive.zf.read(f"models/{e['folder']}/model.json"))
        load_card(staging, verify_hash=True)
        os.rename(staging, models_dir / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return models_dir / name


# ---- the database ----


def row_counts(conn: Connection) -> dict[str, int]:
    return {
        t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0) for t in reflect(conn)
    }


def _insert(conn: Connection, table: Table, rows: Iterator[dict]) -> int:
    for col in table.c:
        if isinstance(col.type, JSON):
            col.type.none_as_null = True  # a SQL NULL stays NULL, not JSON 'null'
    n = 0
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            conn.execute(table.insert(), batch)
            n, batch = n + len(batch), []
    if batch:
        conn.execute(table.insert(), batch)
        n += len(batch)
    return n


def _move_sequences(conn: Connection, tables: dict[str, Table], recorded: dict[str, int]) -> None:
    """Every id generator past both the restored ids and the ids the source had handed out."""
    if conn.dialect.name == "sqlite":
        auto = [
            name
            for name, sql in conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            if sql and "AUTOINCREMENT" in sql.upper()
        ]
        for name in auto:  # AUTOINCREMENT tables keep their high-water mark in sqlite_sequence
            seq = conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :n"), {"n": name}).scalar()
            wanted = max(int(seq or 0), recorded.get(name, 0))
            conn.execute(text("DELETE FROM sqlite_sequence WHERE name = :n"), {"n": name})
            if wanted:
                conn.execute(
                    text("INSERT INTO sqlite_sequence (name, seq) VALUES (:n, :s)"), {"n": name, "s": wanted}
                )
        return
    for name, t in tables.items():
        if "id" not in t.c:
            continue
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": name}).scalar()
        if not seq:
            continue
        top = max(int(conn.execute(select(func.max(t.c.id))).scalar() or 0), recorded.get(name, 0))
        if top:
            conn.execute(text("SELECT setval(:s, :v, true)"), {"s": seq, "v": top})


def restore(
    path: Path, engine: Engine, models_dir: Path, keys: TemplateCipher, force: bool = False
) -> RestoreReport:
    archive = Archive(path)
    try:
        archive.verify_members()
        archive.check_rows(keys)
        revision = archive.manifest.get("schema_revision")
        if not revision:
            raise BackupError(f"{path}: the manifest names no schema revision")
        check_revision(engine, revision)
        models = check_models(archive, Path(models_dir))
        report = RestoreReport(schema_revision=revision)
        current = current_revision(engine)
        if current is not None:
            with engine.connect() as conn:
                held = {k: v for k, v in row_counts(conn).items() if v}
            if held and not force:
                listed = ", ".join(f"{k}: {v}" for k, v in sorted(held.items()))
                raise BackupError(
                    f"the target database is not empty ({listed}); restore into an empty database, "
                    "or pass --force to replace everything it holds"
                )
            report.replaced_rows = sum(held.values())
        # nothing has been written until here
        for e in models:
            report.models_written.append(str(write_model(archive, Path(models_dir), e).name))
        report.models_present = [
            e["version"]
            for e in archive.manifest.get("models", [])
            if e not in models and not e.get("missing")
        ]
        _restore_rows(archive, engine, revision, current, report)
        migrate(engine)  # to this FaceGate's head
        active = archive.manifest.get("active")
        if active is not None:
            tmp = Path(models_dir) / f".{ACTIVE_FILE}.{uuid.uuid4().hex[:8]}"
            tmp.write_bytes(archive.zf.read(ACTIVE_FILE))
            os.replace(tmp, Path(models_dir) / ACTIVE_FILE)
        return report
    finally:
        archive.close()


def _restore_rows(archive: Archive, engine: Engine, revision: str, current: str | None, report) -> None:
    """Bring the schema to the backup's revision and insert every row in one write transaction.
    With --force on a target at that revision, its rows are deleted in that same transaction (a
    failed restore leaves them); at another revision they are deleted first, as the schema moves."""
    wipe = report.replaced_rows > 0
    if current != revision:
        if wipe:
            _delete_all(engine)
            wipe = False
        if current is not None and _is_ahead(engine, current, revision):
            downgrade(engine, revision)
        else:
            migrate(engine, revision)
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
        with conn.begin():
            lock_for_writing(conn)
            meta = MetaData()
            meta.reflect(bind=conn)
            tables = {t.name: t for t in meta.sorted_tables}
            if wipe:
                for t in reversed(meta.sorted_tables):
                    if t.name not in SKIP_TABLES:
                        conn.execute(delete(t))
            for entry in archive.manifest["tables"]:
                table = tables.get(entry["name"])
                if table is None or {c.name for c in table.c} != {c for c, _ in entry["columns"]}:
                    raise BackupError(
                        f"table {entry['name']} of the backup does not match revision {revision}"
                    )
                report.rows[entry["name"]] = _insert(conn, table, archive.rows(entry))
            _move_sequences(conn, tables, archive.manifest.get("sequences", {}))


def _delete_all(engine: Engine) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            lock_for_writing(conn)
            for t in reversed(reflect(conn)):
                conn.execute(delete(t))


def _is_ahead(engine: Engine, current: str, revision: str) -> bool:
    """Whether ``current`` descends from ``revision`` (the target is newer than the backup)."""
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    return any(r.revision == revision for r in scripts.iterate_revisions(current, "base"))
