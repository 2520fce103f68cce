"""FastAPI dependencies: the application state and API-key authentication with scopes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers

from service.auth import KeyRecord, KeyStore
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


AUTHENTICATED = "facegate.key"  # request scope entry: the KeyRecord service.api.auth_first checked


def _presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    return headers.get("x-api-key") or None


def authenticate(keys: KeyStore, headers: Headers) -> KeyRecord:
    """The active key the request's headers present, else Unauthorized (the one key check)."""
    plaintext = _presented_key(headers)
    if not plaintext:
        raise Unauthorized("an API key is required (Authorization: Bearer <key> or X-API-Key)")
    key = keys.authenticate(plaintext)
    if key is None:
        raise Unauthorized("the API key is unknown or revoked")
    return key


def check_scope(key: KeyRecord, scope: str | None) -> None:
    """Forbidden unless ``key`` has ``scope`` (admin implies every scope; None: any key)."""
    if scope is not None and "admin" not in key.scopes and scope not in key.scopes:
        raise Forbidden(f"this key lacks the '{scope}' scope", required=scope, scopes=sorted(key.scopes))


def require(scope: str | None):
    """A dependency that authenticates the request's key and checks it has ``scope`` (None: any key).

    A key already checked before the body was read (``AUTHENTICATED``) is not looked up again.
    """

    def dependency(request: Request, state: StateDep) -> Caller:
        key = request.scope.get(AUTHENTICATED) or authenticate(state.keys, request.headers)
        check_scope(key, scope)
        return Caller(key.id, key.name, key.scopes, key.collection)

    return dependency


EnrollCaller = Annotated[Caller, Depends(require("enroll"))]
VerifyCaller = Annotated[Caller, Depends(require("verify"))]
CompareCaller = Annotated[Caller, Depends(require("compare"))]
AdminCaller = Annotated[Caller, Depends(require("admin"))]
AnyCaller = Annotated[Caller, Depends(require(None))]
