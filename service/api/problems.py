"""RFC 9457 problem+json responses for every error the API returns."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import FaceGateError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

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
    status: int, code: str, title: str, detail: str, instance: str = "", **extra: Any
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
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


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
        return problem(
            exc.status_code, code, code.replace("_", " ").capitalize(), str(exc.detail), request.url.path
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return problem(
            500, "internal_error", "Internal error", "an unexpected error occurred", request.url.path
        )
