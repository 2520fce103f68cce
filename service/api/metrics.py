"""The HTTP middleware that counts, times and watches each request into ``service.metrics.Metrics``.

It is the outermost of the application's middleware, so it sees every answer: those of the
routes, and the problems answered by the key check, the body limit and the admission before any
route runs. A problem+json answer is counted under its ``code`` (read from the body it sends);
an exception that escapes the application is the 500 ``internal_error`` Starlette answers
outside it. The 408 a connection gets when its headers never complete
(``service.api.slow_clients``) is written before the application is called, and is not counted.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import PROBLEM_JSON
from service.metrics import Metrics

_MAX_PROBLEM_BODY = 64 * 1024
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
Templates = list[tuple[re.Pattern[str], str, frozenset[str]]]


def documented_templates(openapi: dict[str, Any]) -> Templates:
    """Each path of the API document: its pattern, its template and the methods it has."""
    return [
        (compile_path(path)[0], path, frozenset(m.upper() for m in item if m in _METHODS))
        for path, item in openapi.get("paths", {}).items()
    ]


def route_template(scope: Scope, templates: Templates) -> str:
    """The route template the request matched (``/people/{person_id}``), not the raw path.

    A request answered before routing (401 from the key check, 413, 503 busy) is looked up in
    the API document's paths (``templates``); one matching none is ``unmatched``.
    """
    path = getattr(scope.get("route"), "path", None)
    if path is not None:
        return path or "/"
    raw, method = scope.get("path", ""), scope.get("method")
    matching = [(template, methods) for pattern, template, methods in templates if pattern.match(raw)]
    for template, methods in matching:
        if method in methods:
            return template
    return matching[0][0] if matching else "unmatched"


class _Answer:
    """What was answered: the status and, for a problem+json, its ``code``."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.code: str | None = None
        self._problem = False
        self._body: list[bytes] = []
        self._size = 0

    def start(self, message: Message) -> None:
        self.status = message["status"]
        for name, value in message.get("headers", ()):
            if name.lower() == b"content-type":
                self._problem = value.decode("latin-1").startswith(PROBLEM_JSON)

    def body(self, message: Message) -> None:
        if not self._problem or self.code is not None:
            return
        chunk = message.get("body", b"")
        self._size += len(chunk)
        if self._size <= _MAX_PROBLEM_BODY:
            self._body.append(chunk)
        if not message.get("more_body", False):
            self.code = _problem_code(b"".join(self._body))
            self._body = []


def _problem_code(body: bytes) -> str:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return "unknown"
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "unknown"


class MetricsMiddleware:
    """Counts and times each request under its route template, and counts the problems answered."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: Templates | None = None

    def _route(self, scope: Scope) -> str:
        if self._templates is None and scope.get("route") is None:
            openapi = getattr(scope.get("app"), "openapi", None)
            self._templates = documented_templates(openapi()) if openapi is not None else []
        return route_template(scope, self._templates or [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        start = time.perf_counter()
        answer = _Answer()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.start(message)
            elif message["type"] == "http.response.body":
                answer.body(message)
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            if answer.status is None:  # Starlette answers it, outside: service.api.problems
                answer.status, answer.code = 500, "internal_error"
            raise
        finally:
            metrics.in_flight.dec()
            route, method = self._route(scope), scope["method"]
            status = str(answer.status or 500)
            metrics.requests.labels(route, method, status).inc()
            metrics.latency.labels(route, method).observe(time.perf_counter() - start)
            if answer.code is not None:
                metrics.problems.labels(answer.code, status, route).inc()
