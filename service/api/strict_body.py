"""Request bodies read without guessing: a JSON key or a form field given twice is refused.

Python's ``json`` and Starlette's form parser keep the last of two values silently; a client (or a
proxy rewriting a body) that sends ``person_id`` twice would then be answered for a person it may
not have meant. Here both are a 422 ``invalid_request`` naming the repeated key.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from service.errors import InvalidRequest


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"the JSON body holds the key {key!r} more than once", key=key)
        out[key] = value
    return out


def loads_json(raw: bytes) -> Any:
    """``raw`` parsed as JSON; a repeated key (at any depth), bad JSON or too deep a nesting is an
    ``InvalidRequest``."""
    try:
        return json.loads(raw, object_pairs_hook=_unique_pairs)
    except RecursionError as exc:
        raise InvalidRequest("the JSON body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from exc


def unique_fields(form: FormData) -> dict[str, Any]:
    """The form's fields by name; a name given twice is an ``InvalidRequest``."""
    out: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name in out:
            raise InvalidRequest(f"the form holds the field {name!r} more than once", field=name)
        out[name] = value
    return out


async def refuse_repeated_json_keys(request: Request) -> None:
    """Dependency for a route whose JSON body FastAPI parses: the same body, checked for repeats
    (FastAPI has already read and parsed it; the bytes are cached on the request)."""
    if "json" in request.headers.get("content-type", ""):
        raw = await request.body()
        if raw:
            try:
                json.loads(raw, object_pairs_hook=_unique_pairs)
            except (ValueError, RecursionError):  # not JSON: FastAPI has answered that already
                pass


async def refuse_repeated_form_fields(request: Request) -> None:
    """Dependency for a route whose form FastAPI parses: no field given twice (the parsed form is
    cached on the request)."""
    if request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www")):
        unique_fields(await request.form())
