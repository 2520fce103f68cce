"""FastAPI dependencies: the application state and API-key authentication with scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import Forbidden, NotReady, Unauthorized
from service.gallery.audit import Caller
from service.recognition import Recognizer
from service.state import AppState


def get_state(request: Request) -> AppState:
    state = getattr(request.app.state, "facegate", None)
    if state is None:
        raise NotReady("the service is still starting")
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_recognizer(state: StateDep) -> Recognizer:
    return state.recognizer


RecognizerDep = Annotated[Recognizer, Depends(get_recognizer)]


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    return request.headers.get("x-api-key") or None


def require(scope: str | None):
    """A dependency that authenticates the request's key and checks it has ``scope`` (None: any key)."""

    def dependency(request: Request, state: StateDep) -> Caller:
        plaintext = _presented_key(request)
        if not plaintext:
            raise Unauthorized("an API key is required (Authorization: Bearer <key> or X-API-Key)")
        key = state.keys.authenticate(plaintext)
        if key is None:
            raise Unauthorized("the API key is unknown or revoked")
        if scope is not None and "admin" not in key.scopes and scope not in key.scopes:
            raise Forbidden(f"this key lacks the '{scope}' scope", required=scope, scopes=sorted(key.scopes))
        return Caller(key.id, key.name, key.scopes)

    return dependency


EnrollCaller = Annotated[Caller, Depends(require("enroll"))]
VerifyCaller = Annotated[Caller, Depends(require("verify"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
AnyCaller = Annotated[Caller, Depends(require(None))]
