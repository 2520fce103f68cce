"""The `facegate` command: serve, manage API keys, enrol a folder of people."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from service.gallery import audit
from service.gallery.audit import Caller
from service.settings import get_settings

app = typer.Typer(help="FaceGate face verification service.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
people_app = typer.Typer(
    help="People who leave or pause: suspension from a staff list.", no_args_is_help=True
)
app.add_typer(people_app, name="people")
audit_app = typer.Typer(help="The access log: retention.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
console = Console()

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default FACEGATE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default FACEGATE_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Start the HTTP service with the configured model (the shipped default unless set)."""
    import uvicorn

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "service.api.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level=settings.log_level,
        # httptools with a deadline for each request's headers (FACEGATE_HEADER_TIMEOUT): 408, closed
        http="service.api.slow_clients:HeaderTimeoutProtocol",
    )


def _keystore():
    from service.auth import KeyStore
    from service.gallery.db import make_engine, migrate, session_factory

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return KeyStore(session_factory(engine))


CLI = Caller(None, "cli (facegate keys)", frozenset({"admin"}))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="a label for the key, e.g. the door or the app using it")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", "-s", help="enroll, verify, metrics (reads /metrics only) or admin (repeatable)"
        ),
    ],
) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    try:
        plaintext, record = _keystore().create(
            name, set(scope), audit.row(CLI, "key_create", detail={"scopes": sorted(set(scope))})
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    console.print(f"created key {record.id} '{record.name}' with scopes {sorted(record.scopes)}:")
    typer.echo(plaintext)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    table = Table("id", "name", "prefix", "scopes", "created", "last used", "revoked")
    for k in _keystore().list_keys():
        table.add_row(
            str(k.id),
            k.name,
            k.prefix,
            ",".join(sorted(k.scopes)),
            str(k.created_at)[:19],
            str(k.last_used_at or "")[:19],
            str(k.revoked_at or "")[:19],
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int) -> None:
    """Revoke a key by id."""
    from service.errors import FaceGateError

    try:
        _keystore().revoke(key_id, None, audit.row(CLI, "key_revoke"))
    except FaceGateError as exc:  # no such key; the last admin key
        raise typer.BadParameter(exc.detail) from exc
    console.print(f"revoked key {key_id}")


@app.command("enroll-dir")
def enroll_dir(
    directory: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="DIR/<person_id>/<photo>")],
    replace: Annotated[bool, typer.Option(help="replace people already enrolled")] = False,
    allow_duplicate: Annotated[bool, typer.Option(help="enrol faces that match another person")] = False,
    largest_face: Annotated[
        bool, typer.Option(help="take the largest face when a photo has several")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="worker processes for the photos (default: one per core; 0: this process)"),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="people written per transaction")] = 64,
) -> None:
    """Enrol every person of DIR from their first usable photo; report each rejected photo and why.

    People already enrolled are skipped (unless --replace), so a run that was interrupted carries
    on where it stopped when started again."""
    from service.bulk_enroll import cpu_count
    from service.enroll_dir import EnrollReport, enroll_directory
    from service.metrics import Metrics
    from service.state import build_state

    logging.basicConfig(level=logging.WARNING)
    state = build_state(get_settings(), Metrics())
    people = sorted(p for p in directory.iterdir() if p.is_dir())
    n_workers = cpu_count() if workers is None else workers
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rates]}"),
        TimeRemainingColumn(),
        console=console,
    )

    def show(report: EnrollReport) -> None:
        rates = f"{report.photos_per_s:.1f} photos/s, {report.people_per_s:.1f} people/s"
        progress.update(task, completed=len(report.already_enrolled) + report.people, rates=rates)

    try:
        with progress:
            task = progress.add_task(f"enrolling ({n_workers} workers)", total=len(people), rates="")
            report = enroll_directory(
                state.recognizer,
                people,
                PHOTO_SUFFIXES,
                replace,
                allow_duplicate,
                largest_face,
                workers=n_workers,
                batch_size=batch_size,
                on_progress=show,
            )
    except KeyboardInterrupt:
        console.print("interrupted: every batch written so far is kept; run the command again to go on")
        state.close()
        raise typer.Exit(code=130) from None
    table = Table("person", "photo", "outcome")
    for row in report.rejected:
        table.add_row(row.person_id, row.photo, row.reason)
    if report.rejected:
        console.print(table)
    console.print(
        f"enrolled {report.enrolled}, skipped {len(report.already_enrolled)} already enrolled, "
        f"rejected {len(report.failed_people)} of {len(people)} people; {report.photos} photos in "
        f"{report.elapsed:.1f} s ({report.photos_per_s:.1f} photos/s, {n_workers} workers)",
        highlight=False,
    )
    state.close()
    if report.failed_people:
        raise typer.Exit(code=1)


@app.command()
def calibrate(
    directory: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="DIR/<identity>/<photo> (+ optional pairs.csv)"),
    ],
    models_dir: Annotated[
        Path | None, typer.Option(help="models folder (default FACEGATE_MODELS_DIR)")
    ] = None,
    target_far: Annotated[
        float | None,
        typer.Option(help="false-accept rate of the reported threshold (default FACEGATE_TARGET_FAR)"),
    ] = None,
) -> None:
    """Calibrate the active model on a labelled folder; publish the result as a new model version."""
    import json

    from service.errors import FaceGateError
    from service.model_registry import startup_entry
    from service.org_calibration import calibrate_and_publish, read_folder
    from service.pipeline.detect import FaceDetector
    from service.pipeline.embed import Embedder
    from service.pipeline.pipeline import FacePipeline

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    models = models_dir or settings.models_dir
    try:
        entry = startup_entry(models, settings.model)
        detector = FaceDetector(
            models, min_face_size=settings.min_face_size, max_side=settings.detect_max_side
        )
        pipeline = FacePipeline(detector, Embedder(entry.folder), settings.max_image_pixels)
        report = calibrate_and_publish(
            pipeline, entry, read_folder(directory), models, target_far or settings.target_far
        )
    except FaceGateError as exc:
        console.print(f"[red]calibration refused:[/red] {exc.detail}")
        raise typer.Exit(code=1) from exc
    typer.echo(json.dumps(report, indent=2, default=str))
    console.print(
        f"published model version {report['version']} (based on {report['based_on']}): at target FAR "
        f"{report['target_far']:g} the threshold gives FAR {report['far']:.4g} and FRR {report['frr']:.4g} on "
        f"this data. Activate it with POST /admin/models/{report['version']}/activate "
        "(or let FACEGATE_WATCH_MODELS pick it up).",
        highlight=False,
    )


def _sessions():
    from service.gallery.db import make_engine, migrate, session_factory

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return session_factory(engine)


@people_app.command("sync")
def people_sync(
    staff_csv: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, help="CSV of current staff: a person_id column, or one id per row"
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print what would change, change nothing")
    ] = False,
    reactivate: Annotated[
        bool, typer.Option(help="also reactivate suspended people who are on the list")
    ] = False,
) -> None:
    """Suspend everyone enrolled who is not on the staff list (nobody is deleted; audited)."""
    from service import people_sync as ps

    try:
        staff = ps.read_staff(staff_csv.read_text(encoding="utf-8-sig"))
    except (ps.EmptyStaffList, UnicodeDecodeError) as exc:
        raise typer.BadParameter(str(exc), param_hint="STAFF_CSV") from exc
    sessions = _sessions()
    caller = Caller(None, "cli (facegate people sync)", frozenset({"admin"}))
    if dry_run:
        todo = ps.preview(sessions, staff, reactivate)
    else:
        todo = ps.sync(sessions, staff, caller, staff_csv.name, reactivate)
    verb = "would " if dry_run else ""
    for pid in todo.suspend:
        typer.echo(f"{verb}suspend {pid}")
    for pid in todo.reactivate:
        typer.echo(f"{verb}reactivate {pid}")
    for pid in todo.listed_suspended:
        typer.echo(f"listed but suspended (left suspended; --reactivate to reactivate): {pid}")
    for pid in todo.unknown:
        typer.echo(f"listed but not enrolled: {pid}")
    n = todo.summary()
    typer.echo(
        f"{'dry run: ' if dry_run else ''}{n['staff']} on the list, {n['kept']} active kept, "
        f"{n['suspended']} {verb}suspended, {n['reactivated']} {verb}reactivated"
    )


# ---- templates encrypted at rest (service/gallery/cipher.py, encryption.py) ----

encryption_app = typer.Typer(
    help="Reference crops and embeddings encrypted at rest: keys and rotation.", no_args_is_help=True
)
app.add_typer(encryption_app, name="encryption")


def _template_sessions():
    """Sessions on the migrated database whose templates open with FACEGATE_ENCRYPTION_KEYS."""
    from service.gallery.cipher import TemplateCipher
    from service.gallery.db import make_engine, migrate, session_factory

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return session_factory(engine, TemplateCipher.from_setting(settings.encryption_keys))


@encryption_app.command("new-key")
def encryption_new_key(
    key_id: Annotated[str, typer.Argument(help="1 to 8 letters, digits, '-' or '_', e.g. 2025q3")],
) -> None:
    """Print a fresh random AES-256 key as an id:key entry for FACEGATE_ENCRYPTION_KEYS."""
    from service.gallery.cipher import new_key

    try:
        entry = new_key(key_id)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="KEY_ID") from exc
    typer.echo(
        "Put this entry first in FACEGATE_ENCRYPTION_KEYS (comma-separated, newest first) and keep "
        "the older keys listed until `facegate encryption rotate` has run:",
        err=True,
    )
    typer.echo(entry)


@encryption_app.command("status")
def encryption_status() -> None:
    """Stored crops and embeddings per key (and in clear); checks that every key opens its rows."""
    from service.gallery.cipher import TemplateKeyError
    from service.gallery.encryption import census, check_keys

    sessions = _template_sessions()
    with sessions() as s:
        found = census(s)
    table = Table("key", "reference crops", "embeddings")
    for kid in sorted({k for per in found.counts.values() for k in per}):
        table.add_row(kid, *(str(found.counts[t].get(kid, 0)) for t in ("crops", "embeddings")))
    console.print(table)
    try:
        check_keys(sessions)
    except TemplateKeyError as exc:
        typer.echo(f"keys do not match the database: {exc}")
        raise typer.Exit(code=1) from exc
    typer.echo("every stored template opens with FACEGATE_ENCRYPTION_KEYS")


@encryption_app.command("rotate")
def encryption_rotate(
    batch: Annotated[int, typer.Option(min=1, help="rows re-encrypted per write transaction")] = 200,
    pause: Annotated[float, typer.Option(min=0, help="seconds between batches, for waiting writers")] = 0.05,
) -> None:
    """Re-encrypt every stored crop and embedding (in clear or under an older key) with the first
    key of FACEGATE_ENCRYPTION_KEYS, in batches, while the service keeps running."""
    from service.gallery.cipher import TemplateKeyError
    from service.gallery.encryption import check_keys, rotate

    logging.basicConfig(level=logging.WARNING)
    sessions = _template_sessions()
    try:
        check_keys(sessions)  # every row must open before any is rewritten
        report = rotate(sessions, batch, pause, progress=lambda what, n: console.print(f"{what}: {n}"))
    except TemplateKeyError as exc:
        typer.echo(f"rotation refused: {exc}")
        raise typer.Exit(code=1) from exc
    with sessions() as s:
        from service.gallery import cipher

        newest = cipher.of(s).write_key
    typer.echo(
        f"re-encrypted {report.rewritten['crops']} reference crops and {report.rewritten['embeddings']} "
        f"embeddings under key {newest!r} in {report.seconds:.1f} s ({report.batches} batches)"
    )
    if report.remaining:  # written meanwhile under an older key, e.g. by a replica not yet restarted
        typer.echo(f"{report.remaining} templates are still not under key {newest!r}: run it again")
        raise typer.Exit(code=1)


@audit_app.command("purge")
def audit_purge(
    days: Annotated[
        int | None, typer.Option(min=1, help="keep this many days (default FACEGATE_AUDIT_RETENTION_DAYS)")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="count, delete nothing")] = False,
) -> None:
    """Delete audit rows older than the retention; the purge itself is recorded."""
    from service import audit_retention

    retention = days if days is not None else get_settings().audit_retention_days
    if retention <= 0:
        typer.echo("FACEGATE_AUDIT_RETENTION_DAYS is 0 (keep forever) and no --days given: nothing purged")
        return
    sessions = _sessions()
    if dry_run:
        cutoff = audit_retention.cutoff_for(retention)
        n = audit_retention.count_older(sessions, cutoff)
        typer.echo(f"dry run: would delete {n} audit rows older than {cutoff.isoformat()} ({retention} days)")
        return
    caller = Caller(None, "cli (facegate audit purge)", frozenset({"admin"}))
    done = audit_retention.purge(sessions, retention, caller, record_empty=True)
    typer.echo(f"deleted {done.deleted} audit rows older than {done.cutoff.isoformat()} ({retention} days)")


# ---- backup and restore (service/backup.py, service/restore.py) ----


@app.command("backup")
def backup_command(
    out: Annotated[Path, typer.Argument(dir_okay=False, help="the archive to write (a zip file)")],
    model_files: Annotated[
        bool,
        typer.Option(help="store the model versions' files (model.onnx ...) or only their sha256"),
    ] = True,
) -> None:
    """Export a consistent backup: every database row (people, crops, embeddings per model version,
    keys as hashes, audit) read in one snapshot, and the model versions in use with active.json."""
    from service.backup import BackupError, backup
    from service.gallery.db import make_engine

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    engine = make_engine(settings.database_url)
    try:
        report = backup(engine, settings.models_dir, out, include_model_files=model_files)
    except BackupError as exc:
        typer.echo(f"backup failed: {exc}")
        raise typer.Exit(code=1) from exc
    finally:
        engine.dispose()
    rows = ", ".join(f"{k} {v}" for k, v in report.rows.items())
    typer.echo(f"wrote {out} ({report.bytes / 1e6:.1f} MB): {rows}")
    missing = ", ".join(report.missing_models)
    typer.echo(
        f"model versions: {', '.join(report.models) or 'none'}"
        + ("" if report.model_files_included else " (by sha256 only)")
        + (f"; not found in the models folder: {missing}" if missing else "")
    )
    if report.key_ids:
        typer.echo(
            f"templates encrypted with key(s) {', '.join(report.key_ids)}: restoring needs them in "
            "FACEGATE_ENCRYPTION_KEYS"
        )


@app.command("restore")
def restore_command(
    archive: Annotated[Path, typer.Argument(dir_okay=False, help="an archive written by facegate backup")],
    force: Annotated[
        bool, typer.Option("--force", help="replace what a non-empty target database holds")
    ] = False,
) -> None:
    """Restore a backup into an empty deployment (FACEGATE_DATABASE_URL, FACEGATE_MODELS_DIR); the
    archive is checked whole first. Stop the service on the target while it runs."""
    from service.backup import BackupError
    from service.gallery.cipher import TemplateCipher
    from service.gallery.db import make_engine
    from service.restore import restore

    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        keys = TemplateCipher.from_setting(settings.encryption_keys)
        report = restore(archive, engine, settings.models_dir, keys, force=force)
    except BackupError as exc:
        typer.echo(f"restore refused: {exc}")
        raise typer.Exit(code=1) from exc
    finally:
        engine.dispose()
    rows = ", ".join(f"{k} {v}" for k, v in report.rows.items())
    typer.echo(f"restored {archive} (schema {report.schema_revision}, then migrated): {rows}")
    from service.snapshot import IndexSnapshots

    # the index snapshots describe the database before the restore: the next start rebuilds
    dropped = IndexSnapshots(settings.index_snapshot_dir or settings.data_dir / "index-snapshots").discard()
    if dropped:
        typer.echo(f"removed {dropped} index snapshots of the database before the restore")
    if report.replaced_rows:
        typer.echo(f"replaced {report.replaced_rows} rows the target held (--force)")
    typer.echo(
        f"model versions written: {', '.join(report.models_written) or 'none'}; "
        f"already there: {', '.join(report.models_present) or 'none'}"
    )


if __name__ == "__main__":
    app()
