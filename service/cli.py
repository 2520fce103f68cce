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
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="enroll, verify or admin (repeatable)")],
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
) -> None:
    """Enrol every person of DIR from their first usable photo; report each rejected photo and why."""
    from service.enroll_dir import enroll_directory
    from service.metrics import Metrics
    from service.state import build_state

    logging.basicConfig(level=logging.WARNING)
    state = build_state(get_settings(), Metrics())
    people = sorted(p for p in directory.iterdir() if p.is_dir())
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("enrolling", total=len(people))
        report = enroll_directory(
            state.recognizer,
            people,
            PHOTO_SUFFIXES,
            replace,
            allow_duplicate,
            largest_face,
            on_person=lambda: progress.advance(task),
        )
    table = Table("person", "photo", "outcome")
    for row in report.rejected:
        table.add_row(row.person_id, row.photo, row.reason)
    if report.rejected:
        console.print(table)
    console.print(f"enrolled {report.enrolled}, skipped {len(report.failed_people)} of {len(people)} people")
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


if __name__ == "__main__":
    app()
