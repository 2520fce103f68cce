"""Health, readiness, metrics, the model card and the caller's own key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import AdminCaller, AnyCaller, StateDep, get_state, require
from service.api.problems import problem_responses
from service.errors import NotReady
from service.gallery.audit import Caller
from service.schemas import Health, ModelInUse, Readiness, ReadyChecks, WhoAmI

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
    """The model card in use, with the execution provider running it."""
    rec = state.recognizer
    return ModelInUse(**dict(rec.card), execution_providers=list(rec.pipeline.embedder.providers))


@router.get("/me", response_model=WhoAmI, responses=problem_responses(401, 503))
def me(state: StateDep, caller: AnyCaller) -> WhoAmI:
    """The presenting key's name and scopes (for the web console)."""
    key = state.keys.get(caller.key_id)
    return WhoAmI(id=key.id, name=key.name, scopes=sorted(key.scopes))
