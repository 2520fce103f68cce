"""OpenAPI request bodies for routes that take a photo as multipart or JSON."""

from __future__ import annotations

from pydantic import BaseModel


def photo_body(json_model: type[BaseModel]) -> dict:
    """``openapi_extra`` documenting both accepted encodings of a photo request."""
    schema = json_model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    form = {
        "type": "object",
        "required": ["image", *[r for r in schema.get("required", []) if r != "image_base64"]],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "JPEG, PNG or WebP photo"},
            **{k: v for k, v in schema.get("properties", {}).items() if k != "image_base64"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": schema},
            },
        }
    }
