"""Health, readiness, metrics, the model card and the caller's own key."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import AdminCaller, AnyCaller, StateDep, get_state
from service.errors import NotReady
from service.schemas import WhoAmI

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> dict:
    """Database reachable, model loaded and index in step with the database."""
    state = get_state(request)
    checks = {
        "database": state.database_ok(),
        "model": state.recognizer is not None,
        "index": state.recognizer is not None and state.recognizer.gallery.consistency_check(),
    }
    if not all(checks.values()):
        raise NotReady("not ready: " + ", ".join(k for k, ok in checks.items() if not ok), checks=checks)
    return {"status": "ready", "checks": checks, "model_version": state.recognizer.version}


@router.get("/metrics", response_class=Response)
def metrics(state: StateDep, caller: AdminCaller) -> Response:
    """Prometheus metrics (text exposition format)."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/model")
def model(state: StateDep, caller: AdminCaller) -> dict:
    """The model card in use, with the execution provider running it and the live thresholds."""
    rec = state.recognizer
    card = rec.card.model_dump(mode="json")
    card["execution_providers"] = rec.pipeline.embedder.providers
    return card


@router.get("/me", response_model=WhoAmI)
def me(state: StateDep, caller: AnyCaller) -> WhoAmI:
    """The presenting key's name and scopes (for the web console)."""
    key = state.keys.get(caller.key_id)
    return WhoAmI(name=key.name, scopes=sorted(key.scopes))
