"""A consistent backup of a deployment in one archive: every database row and the model versions in use.

The archive is a zip file::

    manifest.json             what is inside, with the sha256 of every other member
    tables/<table>.jsonl      every row of every table (people, crops, embeddings of every model
                              version, API keys (hashed, as stored), audit, change log, ...)
    models/<folder>/model.json  the card of each model version in use (its embeddings are stored,
                              or it is the active one)
    objects/<sha256>          the files of those versions' folders (model.onnx, ...), each stored
                              once; left out with ``include_model_files=False`` (the manifest
                              then keeps their sha256 as a reference)
    active.json               the models folder's record of the active version, when there is one

All tables are read in one read transaction (a snapshot: REPEATABLE READ, read only, on
PostgreSQL; one deferred transaction on SQLite, whose WAL gives a reader a fixed view), so the
backup is the database at one instant even while the service keeps writing. The tables are
reflected from the database rather than taken from the ORM, so a backup holds exactly the schema
revision it was taken at (recorded in the manifest) and ``service.restore`` can rebuild it on
either backend. Encrypted templates (``service.gallery.cipher``) are copied as they are stored:
restoring them needs the same ``FACEGATE_ENCRYPTION_KEYS``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import IO, Any

from sqlalchemy import JSON, DateTime, LargeBinary, MetaData, Table, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import TypeEngine

from service.gallery import cipher
from service.model_registry import ACTIVE_FILE, read_active, scan

log = logging.getLogger(__name__)

FORMAT = "facegate-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SKIP_TABLES = frozenset({"alembic_version"})
# The columns holding templates, sealed or in clear (service.gallery.cipher).
TEMPLATE_COLUMNS = {"reference_crops": "image_png", "embeddings": "vector"}
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup that cannot be taken, read or restored; the message says why."""


# ---- values: one JSON form per column kind, the same on SQLite and PostgreSQL ----


def column_kind(t: TypeEngine) -> str:
    if isinstance(t, LargeBinary):
        return "binary"
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, JSON):
        return "json"
    return "value"


def encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "binary":
        return base64.b64encode(bytes(value)).decode()
    if kind == "datetime":
        when = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)  # SQLite: UTC
        return when.astimezone(timezone.utc).isoformat()
    return value


def decode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "binary":
        return base64.b64decode(value, validate=True)
    if kind == "datetime":
        return datetime.fromisoformat(value).astimezone(timezone.utc)
    return value


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Hashing:
    """A writable stream that hashes what goes through it."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out, self.sha = out, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.out.write(data)


# ---- the database at one instant ----


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read-only transaction that sees the database at one instant."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with conn.begin():
            yield conn


def reflect(conn: Connection) -> list[Table]:
    """The database's tables in insertion order (referenced tables first)."""
    meta = MetaData()
    meta.reflect(bind=conn)
    return [t for t in meta.sorted_tables if t.name not in SKIP_TABLES]


def schema_revision(conn: Connection) -> str | None:
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # no alembic_version table: not a FaceGate database
        raise BackupError(f"the database has no FaceGate schema (alembic_version: {exc})") from exc


def sequences(conn: Connection, tables: list[Table]) -> dict[str, int]:
    """The last id each table's id generator handed out (ids of deleted rows included), so that a
    restore never hands out again an id that existed (embedding ids are FAISS ids)."""
    out: dict[str, int] = {}
    if conn.dialect.name == "sqlite":
        if conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
            out = {
                name: int(seq) for name, seq in conn.execute(text("SELECT name, seq FROM sqlite_sequence"))
            }
        return out
    for t in tables:
        if "id" not in t.c or not t.c.id.primary_key:
            continue
        seq = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": t.name}).scalar()
        if seq:
            last, called = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
            if called:
                out[t.name] = int(last)
    return out


# ---- models in use ----


def model_entries(models_dir: Path, versions: set[str]) -> tuple[list[dict], list[tuple[str, Path]]]:
    """Manifest entries for the model versions in use and the files of their folders."""
    registry = scan(models_dir)
    entries: list[dict] = []
    files: list[tuple[str, Path]] = []
    for version in sorted(versions):
        entry = registry.get(version)
        if entry is None:
            log.warning(
                "model version %s is in use but not in %s: backed up by name only", version, models_dir
            )
            entries.append({"version": version, "missing": True})
            continue
        folder_files = {}
        for path in sorted(p for p in entry.folder.rglob("*") if p.is_file()):
            digest = sha256_file(path)
            folder_files[path.relative_to(entry.folder).as_posix()] = digest
            files.append((digest, path))
        entries.append(
            {
                "version": version,
                "folder": entry.folder.name,
                "model_file": entry.card.file,
                "sha256": entry.card.sha256,
                "files": folder_files,
            }
        )
    return entries, files


# ---- writing the archive ----


@dataclass
class BackupReport:
    path: Path
    rows: dict[str, int] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    missing_models: list[str] = field(default_factory=list)
    model_files_included: bool = True
    key_ids: list[str] = field(default_factory=list)
    bytes: int = 0


def _write_table(
    zf: zipfile.ZipFile, conn: Connection, t: Table, kinds: list[tuple[str, str]], key_ids: set[str]
) -> tuple[int, str]:
    """Stream the table's rows in primary-key order into its member; adds the key ids that
    sealed its templates (``TEMPLATE_COLUMNS``) to ``key_ids``."""
    member = f"tables/{t.name}.jsonl"
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    pk = list(t.primary_key.columns) or list(t.c)
    rows = 0
    template = TEMPLATE_COLUMNS.get(t.name)
    with zf.open(info, "w", force_zip64=True) as raw:
        out = _Hashing(raw)
        result = conn.execution_options(stream_results=True, yield_per=500).execute(select(t).order_by(*pk))
        for row in result:
            values = row._mapping
            line = {name: encode(kind, values[name]) for name, kind in kinds}
            if template is not None and values[template] is not None:
                kid = cipher.key_id_of(bytes(values[template][: cipher.PREFIX_BYTES]))
                if kid is not None:
                    key_ids.add(kid)
            out.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            rows += 1
    return rows, out.sha.hexdigest()


def _write_bytes(zf: zipfile.ZipFile, member: str, data: bytes, deflate: bool = True) -> str:
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    zf.writestr(info, data)
    return hashlib.sha256(data).hexdigest()


def _write_file(zf: zipfile.ZipFile, member: str, path: Path) -> str:
    info = zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED  # model weights do not compress
    with zf.open(info, "w", force_zip64=True) as raw, path.open("rb") as f:
        out = _Hashing(raw)
        while chunk := f.read(CHUNK):
            out.write(chunk)
    return out.sha.hexdigest()


def backup(
    engine: Engine,
    models_dir: Path,
    out: Path,
    include_model_files: bool = True,
    on_table: Callable[[str, int], None] | None = None,
) -> BackupReport:
    """Write the backup archive to ``out`` (replaced atomically: a failed backup leaves no file).
    ``on_table(name, rows)`` is called after each table is written."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial")
    report = BackupReport(out, model_files_included=include_model_files)
    active_path = Path(models_dir) / ACTIVE_FILE
    active = active_path.read_bytes() if active_path.is_file() else None
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "facegate_version": _version(),
        "source_backend": engine.dialect.name,
        "tables": [],
        "members": {},
    }
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            with snapshot(engine) as conn:
                manifest["schema_revision"] = schema_revision(conn)
                tables = reflect(conn)
                manifest["sequences"] = sequences(conn, tables)
                key_ids: set[str] = set()
                for t in tables:
                    kinds = [(c.name, column_kind(c.type)) for c in t.c]
                    rows, digest = _write_table(zf, conn, t, kinds, key_ids)
                    member = f"tables/{t.name}.jsonl"
                    manifest["tables"].append(
                        {"name": t.name, "columns": kinds, "rows": rows, "member": member}
                    )
                    manifest["members"][member] = digest
                    report.rows[t.name] = rows
                    if on_table is not None:
                        on_table(t.name, rows)
                versions = {v for (v,) in conn.execute(text("SELECT DISTINCT model_version FROM embeddings"))}
            report.key_ids = manifest["key_ids"] = sorted(key_ids)
            active_version = read_active(Path(models_dir)) if active is not None else None
            if active_version:
                versions.add(active_version)
            entries, files = model_entries(Path(models_dir), versions)
            manifest["models"] = entries
            manifest["model_files_included"] = include_model_files
            for e in entries:
                if e.get("missing"):
                    report.missing_models.append(e["version"])
                    continue
                report.models.append(e["version"])
                card = Path(models_dir) / e["folder"] / "model.json"
                member = f"models/{e['folder']}/model.json"
                manifest["members"][member] = _write_bytes(zf, member, card.read_bytes())
            if include_model_files:
                for digest, path in files:
                    member = f"objects/{digest}"
                    if member not in manifest["members"]:
                        manifest["members"][member] = _write_file(zf, member, path)
            if active is not None:
                manifest["active"] = json.loads(active)
                manifest["members"][ACTIVE_FILE] = _write_bytes(zf, ACTIVE_FILE, active)
            _write_bytes(zf, MANIFEST, json.dumps(manifest, indent=1).encode())
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report.bytes = out.stat().st_size
    log.info("backup %s: %s rows, models %s", out, report.rows, report.models)
    return report


def _version() -> str:
    try:
        return importlib_metadata.version("facegate")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"
