"""Health, readiness, metrics, the model card and the caller's own key."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import AdminCaller, AnyCaller, StateDep, get_state, require
from service.api.problems import problem_responses
from service.decisions import identify_threshold, verify_threshold
from service.errors import NotReady
from service.gallery.audit import Caller
from service.model_figures import MEDIA_TYPES, NAME_PATTERN, figure_file, list_figures
from service.schemas import (
    Health,
    IdentifyOperatingPoint,
    ModelInUse,
    OperatingPoint,
    OperatingPoints,
    Readiness,
    ReadyChecks,
    WhoAmI,
)

router = APIRouter(tags=["system"])

MetricsCaller = Annotated[Caller, Depends(require("metrics"))]  # a scraper's key, or admin


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=problem_responses(503, s503="not ready (not_ready): `checks` says which check failed"),
)
def readyz(request: Request) -> Readiness:
    """Database reachable, model loaded and index in step with the database (counts and change-log
    positions: the full comparison is ``GET /admin/consistency``)."""
    state = get_state(request)
    checks = {
        "database": state.database_ok(),
        "model": state.recognizer is not None,
        "index": state.recognizer is not None and state.readiness.index_ready(state.recognizer.gallery),
    }
    if not all(checks.values()):
        raise NotReady("not ready: " + ", ".join(k for k, ok in checks.items() if not ok), checks=checks)
    return Readiness(status="ready", checks=ReadyChecks(**checks), model_version=state.recognizer.version)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **problem_responses(401, 403, 503),
    },
)
def metrics(state: StateDep, caller: MetricsCaller) -> Response:
    """Prometheus metrics (text exposition format); a key with the `metrics` or `admin` scope."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", response_model=ModelInUse, responses=problem_responses(401, 403, 503))
def model(state: StateDep, caller: AdminCaller) -> ModelInUse:
    """The model card in use, with the execution provider running it, the thresholds /verify and
    /identify decide with now, and the figure files the version ships."""
    rec, entry = state.lifecycle.current_with_entry()
    s, cal, size = state.settings, rec.card.calibration, rec.gallery.size()
    verify = verify_threshold(cal, s.target_far, s.verify_threshold)
    identify = identify_threshold(cal, s.target_fpir, size)
    return ModelInUse(
        **dict(rec.card),
        execution_providers=list(rec.pipeline.embedder.providers),
        operating_points=OperatingPoints(
            verify=OperatingPoint(**asdict(verify)),
            identify=IdentifyOperatingPoint(**asdict(identify), fpir=s.target_fpir, gallery_size=size),
        ),
        figures=list_figures(entry.folder),
    )


@router.get(
    "/model/figures/{name:path}",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in sorted(set(MEDIA_TYPES.values()))
            }
        },
        **problem_responses(
            401, 403, 404, 422, 503, s404="no such figure (figure_not_found)", s422="not a figure file name"
        ),
    },
)
def model_figure(
    # the pattern is documented, not enforced here: figure_file refuses a name as invalid_figure_name
    name: Annotated[str, Path(description="a figure file name", json_schema_extra={"pattern": NAME_PATTERN})],
    state: StateDep,
    caller: AdminCaller,
) -> FileResponse:
    """A figure of the model in use (the names are GET /model's `figures`); nothing else is served:
    a name with a folder in it (`..`, `/`) is refused (invalid_figure_name)."""
    _, entry = state.lifecycle.current_with_entry()
    path, media_type = figure_file(entry.folder, name)
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})


@router.get("/me", response_model=WhoAmI, responses=problem_responses(401, 503))
def me(state: StateDep, caller: AnyCaller) -> WhoAmI:
    """The presenting key's name and scopes (for the web console)."""
    key = state.keys.get(caller.key_id)
    return WhoAmI(id=key.id, name=key.name, scopes=sorted(key.scopes))
