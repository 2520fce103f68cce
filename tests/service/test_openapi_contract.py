"""The OpenAPI document says what the service does: every reference resolves, every operation
declares its response body and its problem+json errors, keys are declared as security schemes,
and a 405 names every method of its path in ``Allow``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.api.problems import PROBLEM_JSON, Problem
from service.schemas import Health, ModelInUse, ModelVersions, Readiness
from service.settings import Settings
from tests.service.api_helpers import assert_problem

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
# 2xx bodies that are not JSON, and the media type each declares
NOT_JSON = {
    ("/metrics", "get"): "text/plain",
    ("/people/{person_id}/crop", "get"): "image/png",
    ("/model/figures/{name}", "get"): "image/",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    """The document as served (no database is needed to build it)."""
    return create_app(Settings()).openapi()


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    refs = set(_refs(spec))
    assert refs, "the document references its components"
    missing = sorted(r for r in refs if r.removeprefix("#/components/schemas/") not in schemas)
    assert not missing


def test_the_photo_bodies_document_face_selection_inline(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/identify"]["post"]["requestBody"]["content"]
    for media in ("application/json", "multipart/form-data"):
        field = body[media]["schema"]["properties"]["face_selection"]
        assert set(field["enum"]) >= {"largest", "all"}
    form = body["multipart/form-data"]["schema"]["properties"]
    assert "anyOf" not in form["top_k"] and form["top_k"]["type"] == "integer"  # a form field is never null


def test_every_operation_declares_a_response_body(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        ok = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert ok, f"{method} {path}"
        for status, response in ok.items():
            if status == "204":
                assert "content" not in response, f"{method} {path}"
                continue
            content = response["content"]
            expected = NOT_JSON.get((path, method), "application/json")
            assert any(m.startswith(expected) for m in content), f"{method} {path}: {list(content)}"
            if expected == "application/json":
                schema = content["application/json"]["schema"]
                assert schema.get("$ref") or schema.get("items"), f"{method} {path}: a bare dict"


def test_every_error_is_declared_as_problem_json(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        for status, response in errors.items():
            assert list(response["content"]) == [PROBLEM_JSON], f"{method} {path} {status}"
            assert response["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
        takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
        assert ("422" in errors) == takes_input, f"{method} {path}"
        if method == "post":
            assert "413" in errors, f"{method} {path}"
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/enroll", "post", {"401", "403", "409", "413", "415", "422", "503"}),
        ("/verify", "post", {"401", "403", "404", "413", "415", "422", "503"}),
        ("/identify", "post", {"401", "403", "413", "415", "422", "503"}),
        ("/people/{person_id}/export", "get", {"401", "403", "404", "422", "503"}),
        ("/admin/models/{version}/activate", "post", {"200", "202", "401", "403", "404", "409", "422"}),
        ("/admin/calibrate", "post", {"201", "401", "403", "413", "422"}),
        ("/readyz", "get", {"200", "503"}),
    ],
)
def test_documented_statuses(spec: dict[str, Any], path: str, method: str, statuses: set[str]) -> None:
    assert statuses <= set(spec["paths"][path][method]["responses"])


def test_keyed_operations_declare_the_key_schemes(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    for path, method, operation in _operations(spec):
        keyed = path not in ("/healthz", "/readyz")
        assert ("security" in operation) == keyed, f"{method} {path}"
        assert ("401" in operation["responses"]) == keyed, f"{method} {path}"
    assert Problem.model_json_schema()["additionalProperties"] is True  # codes add their own members


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/people/E1001", "DELETE, GET, PATCH"),  # three routes share the path
        ("TRACE", "/healthz", "GET"),
        ("PUT", "/keys/3", "DELETE"),
        ("GET", "/enroll", "POST"),
        ("POST", "/", "GET"),  # the console page, outside the API document
    ],
)
def test_405_names_every_method_of_the_path(method: str, path: str, allow: str) -> None:
    client = TestClient(create_app(Settings()), raise_server_exceptions=False)  # no lifespan needed
    response = client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


def test_the_system_and_admin_routes_answer_their_models(client: TestClient) -> None:
    assert Health.model_validate(client.get("/healthz").json()).status == "ok"
    ready = Readiness.model_validate(client.get("/readyz").json())
    assert ready.checks.database and ready.checks.index
    model = client.get("/model")
    assert model.status_code == 200
    card = ModelInUse.model_validate(model.json())
    assert card.execution_providers and card.version == ready.model_version
    versions = ModelVersions.model_validate(client.get("/admin/models").json())
    assert versions.active == card.version and any(v.active for v in versions.versions)
    missing = client.post("/admin/models/no-such-version/activate")
    assert_problem(missing, 404, "model_not_found")


def test_activating_the_active_version_answers_its_swap(client: TestClient) -> None:
    active = client.get("/admin/models").json()["active"]
    queued = client.post(f"/admin/models/{active}/activate")
    assert queued.status_code == 200, queued.text  # already active: the no-op swap is done at once
    assert queued.json()["state"] == "done" and queued.json()["version"] == active
