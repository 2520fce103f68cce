"""OpenAPI request bodies for routes that take a photo as multipart or JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``#/$defs/...`` reference replaced by the definition it names.

    The bodies are added through ``openapi_extra``, which cannot add components, so a reference
    to a nested model or enum (``FaceSelection``) would point nowhere.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline(defs[ref.removeprefix("#/$defs/")], defs)
            rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _form_field(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON field as a form field: a form field is absent or a value, it cannot be null."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    out = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    if len(options) == 1:
        return {**options[0], **out}
    return {**out, "anyOf": options} if options else out


def photo_body(
    json_model: type[BaseModel], names: tuple[str, ...] = ("image",), optional: tuple[str, ...] = ()
) -> dict:
    """``openapi_extra`` documenting both accepted encodings of a request with the photos ``names``
    and the optional photos ``optional`` (multipart file fields ``<name>``, JSON fields
    ``<name>_base64``)."""
    schema = json_model.model_json_schema()
    defs = schema.pop("$defs", {})
    schema = _inline(schema, defs)
    encoded = {f"{n}_base64" for n in (*names, *optional)}
    photo = {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP photo"}
    frame = {**photo, "description": "a further frame of the burst, JPEG, PNG or WebP (optional)"}
    form = {
        "type": "object",
        "required": [*names, *[r for r in schema.get("required", []) if r not in encoded]],
        "properties": {
            **{n: photo for n in names},
            **{n: frame for n in optional},
            **{k: _form_field(v) for k, v in schema.get("properties", {}).items() if k not in encoded},
        },
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": form,
                    "encoding": {
                        n: {"contentType": "image/jpeg, image/png, image/webp"} for n in (*names, *optional)
                    },
                },
                "application/json": {"schema": schema},
            },
        }
    }
