"""The API key is checked before a request body is read: nothing is spent on an unknown caller.

FastAPI resolves dependencies (the key check of ``service.api.deps.require``) only after the body
has arrived, and the body limit buffers it first. This middleware, outside both, looks the request
up in the API's own OpenAPI document and, when that operation takes a key (it declares the
``security`` that every operation answering 401 gets), authenticates the key with the same
``deps.authenticate`` while the body is still unread: no, unknown or revoked key is answered 401
with ``Connection: close``, so that the unread body is dropped with the connection. The key it
found is left in the request scope (``deps.AUTHENTICATED``): the route's dependency does not look
it up again and still checks its scope (403).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.deps import AUTHENTICATED, authenticate
from service.api.problems import problem
from service.errors import FaceGateError

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def keyed_operations(openapi: dict[str, Any]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each documented path's pattern with the body methods on it that take a key."""
    out = []
    for path, item in openapi.get("paths", {}).items():
        methods = frozenset(
            m.upper() for m, op in item.items() if m.upper() in BODY_METHODS and op.get("security")
        )
        if methods:
            out.append((compile_path(path)[0], methods))
    return out


class KeyFirstMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._keyed: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _takes_key(self, app: Any, scope: Scope) -> bool:
        if self._keyed is None:
            self._keyed = keyed_operations(app.openapi())
        path, method = scope.get("path", ""), scope["method"]
        return any(method in methods and pattern.match(path) for pattern, methods in self._keyed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        state = getattr(getattr(app, "state", None), "facegate", None)
        if state is None or not self._takes_key(app, scope):  # not started (not_ready), or keyless
            await self.app(scope, receive, send)
            return
        try:
            key = await run_in_threadpool(authenticate, state.keys, Headers(scope=scope))
        except FaceGateError as exc:
            response = problem(
                exc.status,
                exc.code,
                exc.title,
                exc.detail,
                scope.get("path", ""),
                headers={"Connection": "close"},
                **exc.extra,
            )
            await response(scope, receive, send)
            return
        scope[AUTHENTICATED] = key
        await self.app(scope, receive, send)
