"""RFC 9457 problem+json responses for every error the API returns."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import FaceGateError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """An RFC 9457 problem; some codes add members of their own (``errors``, ``reasons``, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the problem type")
    title: str
    status: int
    code: str = Field(description="stable, machine-readable: no_face, unauthorized, ...")
    detail: str
    instance: str | None = Field(None, description="the path that answered")


# When each status is answered; an operation lists the ones it can return (``problem_responses``).
_WHEN = {
    400: "the body could not be parsed (bad_request)",
    401: "no, unknown or revoked API key (unauthorized)",
    403: "the key lacks the scope (forbidden)",
    404: "not found (person_not_found, model_not_found, not_found)",
    408: "the headers or the body did not arrive in time (request_timeout); the connection is closed",
    409: "conflicts with what is stored",
    413: "the body is over the upload limit (image_too_large)",
    415: "not a JPEG, PNG or WebP photo (unsupported_image)",
    422: "a field is missing or malformed (validation_error, invalid_request) or the input cannot be "
    "used (corrupt_image, no_face, ...)",
    429: "over a rate limit of the key or of the client address (rate_limited, with Retry-After and "
    "the limit)",
    503: "the service is not ready (not_ready), or too many photo requests are waiting (busy, with "
    "Retry-After)",
}
_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int, **when: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the problem+json errors an operation returns.

    ``when`` overrides a status's description, keyed ``s409="..."``. Every such operation is
    rate-limited (service/api/rate_limit.py), so 429 is always among them.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in dict.fromkeys((*statuses, 429)):
        response: dict[str, Any] = {
            "description": when.get(f"s{status}", _WHEN[status]),
            "content": {PROBLEM_JSON: {"schema": _REF}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
            }
        if status == 429:
            response["headers"] = {
                "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
            }
        out[status] = response
    return out


def _document(app: FastAPI) -> None:
    """Add the Problem schema and the API-key security schemes to the generated OpenAPI document.

    An operation that answers 401 takes a key, as ``Authorization: Bearer`` or ``X-API-Key``.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                if "401" in operation.get("responses", {}):
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@functools.lru_cache(maxsize=256)
def _template(path: str) -> re.Pattern[str]:
    """``/people/{person_id}`` as a pattern matching ``/people/E1001``."""
    parts = re.split(r"(\{[^}/]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _allowed_methods(request: Request) -> str | None:
    """The documented methods of the request's path (every operation on it), for ``Allow``."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if _template(template).fullmatch(path):
            methods |= {m.upper() for m in item if m in _METHODS}
    return ", ".join(sorted(methods)) or None


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "image_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str = "",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://facegate.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=all_headers or None)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def install(app: FastAPI) -> None:
    _document(app)

    @app.exception_handler(FaceGateError)
    async def _domain(request: Request, exc: FaceGateError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.detail)
        return problem(exc.status, exc.code, exc.title, exc.detail, request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        return problem(422, "validation_error", "Invalid request", detail, request.url.path, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; the path may have several.
            # Paths outside the API document (the console) keep Starlette's header.
            allow = _allowed_methods(request)
            if allow:
                headers["Allow"] = allow
        return problem(
            exc.status_code,
            code,
            code.replace("_", " ").capitalize(),
            str(exc.detail),
            request.url.path,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(
            500, "internal_error", "Internal error", "an unexpected error occurred", request.url.path
        )
