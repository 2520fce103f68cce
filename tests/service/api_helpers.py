"""Helpers shared by the API tests: posting photos and snapshotting everything stored."""

from __future__ import annotations

import base64
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

PROBLEM = "application/problem+json"


def post_photo(client: TestClient, route: str, photo: bytes | Path, *, as_json: bool = False, **fields):
    data = photo.read_bytes() if isinstance(photo, Path) else photo
    if as_json:
        body = {"image_base64": base64.b64encode(data).decode(), **fields}
        return client.post(route, json=body)
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
    return client.post(route, files={"image": ("photo.jpg", data, "image/jpeg")}, data=form)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def snapshot(client: TestClient) -> dict:
    """Every stored row (but key usage times and audit rows) plus the index ids."""
    state = client.app.state.facegate
    out: dict = {}
    with state.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table in ("alembic_version", "audit"):
                continue
            rows = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
            cleaned = [{k: v for k, v in r.items() if k != "last_used_at"} for r in rows]
            out[table] = sorted(map(repr, cleaned))
    out["_index"] = sorted(state.recognizer.gallery.index.ids())
    return out


def lfw_photo(person: Path, i: int):
    """The i-th photo (sorted) of an LFW person's folder, as an RGB image."""
    from PIL import Image

    return Image.open(sorted(person.glob("*.jpg"))[i]).convert("RGB")


def two_face_scene(client: TestClient, a: Path, stranger: Path) -> bytes:
    """Enrol ``a``'s first photo (id ``a``) and return a JPEG of the stranger (large, left) beside
    ``a`` (small, right), so that the largest face is not the enrolled person's."""
    from PIL import Image

    from tests.service.conftest import jpeg

    r = post_photo(
        client, "/enroll", jpeg(lfw_photo(a, 0)), name="Person A", person_id="a", face_selection="largest"
    )
    assert r.status_code == 201, r.text
    both = Image.new("RGB", (250 + 190, 250))
    both.paste(lfw_photo(stranger, 1), (0, 0))
    both.paste(lfw_photo(a, 1).resize((190, 190)), (250, 30))
    return jpeg(both)
