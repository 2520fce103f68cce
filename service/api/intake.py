"""Reading photo requests: a streaming body-size limit, multipart or JSON, strict validation."""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import problem
from service.api.strict_body import loads_json, unique_fields
from service.errors import ImageTooLarge, InvalidRequest
from service.memory import LARGE_BODY, release_free_memory

Options = TypeVar("Options", bound=BaseModel)


def json_body_limit(max_upload_bytes: int) -> int:
    """A base64 photo is 4/3 of its size; leave room for the other fields."""
    return max_upload_bytes * 4 // 3 + 64 * 1024


class BodyLimitMiddleware:
    """Refuses a request body larger than the limit while it streams in (chunked bodies included),
    and one that stalls.

    The body is read here, up to the limit, then replayed to the application: nothing past the
    limit is ever buffered. When no part of the body arrives for ``stall_timeout`` seconds the
    request is answered 408 ``request_timeout`` and its connection closed. Refusals close the
    connection (``Connection: close``) so that an unread rest of the body is never waited for.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, stall_timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.stall_timeout = stall_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        headers = dict(scope.get("headers") or [])
        if b"application/json" in headers.get(b"content-type", b""):
            limit = json_body_limit(self.max_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.stall_timeout)
            except TimeoutError:
                chunks.clear()
                await self._timed_out(scope, send)
                await _hand_back(size)
                return
            if message["type"] == "http.disconnect":
                chunks.clear()
                await _hand_back(size)
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                chunks.clear()
                await self._refuse(scope, send)
                await _hand_back(size)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        del chunks
        sent = False

        async def replay() -> Message:
            nonlocal sent, data
            if not sent:
                sent = True
                message: Message = {"type": "http.request", "body": data, "more_body": False}
                data = b""  # the application holds the only reference from here on
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = problem(
            413,
            "image_too_large",
            "Image too large",
            f"the request body exceeds the upload limit of {self.max_bytes} bytes",
            scope.get("path", ""),
            headers={"Connection": "close"},
            max_bytes=self.max_bytes,
        )
        await response(scope, _drain, send)

    async def _timed_out(self, scope: Scope, send: Send) -> None:
        response = problem(
            408,
            "request_timeout",
            "Request timeout",
            f"no part of the request body arrived for {self.stall_timeout:g} seconds",
            scope.get("path", ""),
            headers={"Connection": "close"},
            timeout_s=self.stall_timeout,
        )
        await response(scope, _drain, send)


async def _hand_back(size: int) -> None:
    """After dropping a large unfinished body, return the freed memory to the OS."""
    if size >= LARGE_BODY:
        await run_in_threadpool(release_free_memory)


async def _drain() -> Message:
    return {"type": "http.disconnect"}


def _decode_base64(text: str, field: str = "image_base64") -> bytes:
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise InvalidRequest(f"{field}: a data URL must be base64-encoded")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{field} is not valid base64: {exc}") from exc


def _validate(model: type[Options], fields: dict) -> Options:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors)
        raise InvalidRequest(detail, errors=errors) from exc


async def read_photo_request(
    request: Request, options: type[Options], max_bytes: int
) -> tuple[bytes, Options]:
    """The photo bytes and the validated options from a multipart or JSON request."""
    photos, opts = await read_photos_request(request, options, max_bytes, ("image",))
    return photos["image"], opts


async def read_photos_request(
    request: Request,
    options: type[Options],
    max_bytes: int,
    names: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> tuple[dict[str, bytes], Options]:
    """The photos named ``names`` (and those of ``optional`` that were sent) and the validated
    options from a multipart or JSON request.

    Multipart: one file field per name. JSON: ``<name>_base64`` per name. Every photo of ``names``
    is required; the whole body is held to the upload limit (``BodyLimitMiddleware``) and each photo
    to ``max_bytes``. The photos come back in the order of ``names`` then ``optional``.
    """
    listed = ", ".join(f"'{n}'" for n in names)
    ctype = request.headers.get("content-type", "")
    photos: dict[str, bytes] = {}
    if ctype.startswith("multipart/form-data"):
        try:
            form = await request.form(max_files=len(names) + len(optional), max_fields=20)
        except Exception as exc:  # malformed multipart bodies raise several parser errors
            raise InvalidRequest(f"the multipart body could not be parsed: {exc}") from exc
        named = unique_fields(form)
        for name in names:
            upload = named.pop(name, None)
            if not isinstance(upload, UploadFile):
                raise InvalidRequest(f"the multipart body needs a file field named '{name}'")
            photos[name] = await upload.read()
        for name in optional:
            upload = named.pop(name, None)
            if upload is None:
                continue
            if not isinstance(upload, UploadFile):
                raise InvalidRequest(f"'{name}' must be a file field")
            photos[name] = await upload.read()
        fields = {k: v for k, v in named.items() if isinstance(v, str)}
        if len(fields) < len(named):
            files = ", ".join(f"'{n}'" for n in (*names, *optional))
            raise InvalidRequest(
                f"only the {files} field{'s' if len(names) + len(optional) > 1 else ''} may be a file"
            )
        opts = _validate(options, fields)
    elif ctype.startswith("application/json"):
        payload = loads_json(await request.body())
        if not isinstance(payload, dict):
            raise InvalidRequest("the JSON body must be an object")
        for name in names:
            raw = payload.pop(f"{name}_base64", None)
            if not isinstance(raw, str) or not raw:
                raise InvalidRequest(f"{name}_base64 (a non-empty base64 string) is required")
            photos[name] = _decode_base64(raw, f"{name}_base64")
        for name in optional:
            if f"{name}_base64" not in payload:
                continue
            raw = payload.pop(f"{name}_base64")
            if not isinstance(raw, str) or not raw:
                raise InvalidRequest(f"{name}_base64 must be a non-empty base64 string")
            photos[name] = _decode_base64(raw, f"{name}_base64")
        opts = _validate(options, payload)
    else:
        raise InvalidRequest(
            f"send the photo{'s' if len(names) > 1 else ''} as multipart/form-data (file field{'s' if len(names) > 1 else ''} "
            f"{listed}) or as JSON with {', '.join(f'{n!r}' for n in (f'{m}_base64' for m in names))}",
            content_type=ctype,
        )
    for name, data in photos.items():
        what = "the image" if len(names) + len(optional) == 1 else name
        if not data:
            raise InvalidRequest(f"{what} is empty")
        if len(data) > max_bytes:
            raise ImageTooLarge(f"{what} is {len(data)} bytes, the limit is {max_bytes}", max_bytes=max_bytes)
    return photos, opts
