"""What a non-admin key sees, through the HTTP API (issue 12).

A door terminal's (``verify``-scoped) key learns who a face is only when the answer is ``match``,
and then only that person: for ``ambiguous`` and ``unknown``, and for every unmatched face under
``face_selection=all``, no ids or names. It may raise the /verify threshold, never lower it; an
admin key may do both. And ``FACEGATE_DATA_DIR`` holds the default SQLite file.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import make_url

from service.api.main import create_app
from service.settings import Settings
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.conftest import ADMIN_KEY, models_available


def _door(client: TestClient) -> dict[str, str]:
    r = client.post("/keys", json={"name": "door", "scopes": ["verify"]})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['key']}"}


def _as(client: TestClient, headers: dict[str, str], route: str, photo, **fields):
    saved = client.headers["Authorization"]
    client.headers["Authorization"] = headers["Authorization"]
    try:
        return post_photo(client, route, photo, **fields)
    finally:
        client.headers["Authorization"] = saved


def _side_by_side(a: Path, b: Path) -> bytes:
    left, right = Image.open(a).convert("RGB"), Image.open(b).convert("RGB")
    both = Image.new("RGB", (left.width + right.width + 40, max(left.height, right.height)))
    both.paste(left, (0, 0))
    both.paste(right, (left.width + 40, 0))
    buf = io.BytesIO()
    both.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def gallery(make_client, lfw_people):
    """Three enrolled people (first photo each) and one stranger; a door key."""
    client = make_client()
    enrolled, stranger = lfw_people[:3], lfw_people[3]
    for i, person in enumerate(enrolled):
        photo = sorted(person.glob("*.jpg"))[0]
        r = post_photo(
            client, "/enroll", photo, name=person.name, person_id=f"p{i}", face_selection="largest"
        )
        assert r.status_code == 201, r.text
    photos = [sorted(p.glob("*.jpg"))[0] for p in enrolled]
    return client, _door(client), photos, sorted(stranger.glob("*.jpg"))[0]


@pytest.mark.lfw
def test_a_door_key_sees_only_the_matched_person(gallery) -> None:
    client, door, photos, _ = gallery
    admin = post_photo(client, "/identify", photos[0], top_k=3).json()
    assert admin["result"] == "match" and len(admin["candidates"]) == 3  # an admin sees the runners-up
    body = _as(client, door, "/identify", photos[0], top_k=3).json()
    assert body["result"] == "match" and body["person"]["person_id"] == "p0"
    assert body["candidates"] == [body["person"]]
    assert body["faces"][0]["candidates"] == [body["person"]]


@pytest.mark.lfw
def test_a_door_key_sees_no_one_for_an_unknown_face(gallery) -> None:
    client, door, _, stranger = gallery
    admin = post_photo(client, "/identify", stranger, top_k=3).json()
    assert admin["result"] == "unknown" and len(admin["candidates"]) == 3
    body = _as(client, door, "/identify", stranger, top_k=3).json()
    assert body["result"] == "unknown" and body["person"] is None and body["candidates"] == []
    assert body["faces"][0]["candidates"] == [] and body["faces"][0]["person"] is None
    assert body["score"] == admin["score"]  # the best score is the door's business; who it is, not
    for p in ("p0", "p1", "p2"):
        assert p not in str(body)


@pytest.mark.lfw
def test_a_door_key_sees_no_one_for_an_ambiguous_face(gallery) -> None:
    client, door, photos, _ = gallery
    r = post_photo(
        client,
        "/enroll",
        photos[1],
        name="Twin",
        person_id="twin",
        allow_duplicate=True,
        face_selection="largest",
    )
    assert r.status_code == 201, r.text
    admin = post_photo(client, "/identify", photos[1]).json()
    assert admin["result"] == "ambiguous" and {c["person_id"] for c in admin["candidates"][:2]} == {
        "p1",
        "twin",
    }
    body = _as(client, door, "/identify", photos[1]).json()
    assert body["result"] == "ambiguous" and body["person"] is None and body["candidates"] == []
    assert "twin" not in str(body) and "p1" not in str(body)


@pytest.mark.lfw
def test_under_face_selection_all_only_matched_faces_name_anyone(gallery) -> None:
    client, door, photos, stranger = gallery
    group = _side_by_side(photos[2], stranger)
    admin = post_photo(client, "/identify", group, face_selection="all", top_k=3).json()
    results = [f["result"] for f in admin["faces"]]
    assert "match" in results and "unknown" in results, results
    assert all(f["candidates"] for f in admin["faces"])  # an admin sees candidates for every face
    body = _as(client, door, "/identify", group, face_selection="all", top_k=3).json()
    assert [f["result"] for f in body["faces"]] == results
    for face in body["faces"]:
        if face["result"] == "match":
            assert face["candidates"] == [face["person"]] and face["person"]["person_id"] == "p2"
        else:
            assert face["candidates"] == [] and face["person"] is None


@pytest.mark.lfw
def test_only_an_admin_may_lower_the_verify_threshold(gallery) -> None:
    client, door, photos, stranger = gallery
    configured = post_photo(client, "/verify", stranger, person_id="p0").json()["threshold"]
    lower, higher = configured / 2, (configured + 1) / 2
    r = _as(client, door, "/verify", stranger, person_id="p0", threshold=lower)
    body = assert_problem(r, 403, "threshold_not_allowed")
    assert body["configured"] == round(configured, 4)
    r = _as(client, door, "/verify", stranger, person_id="p0", threshold=higher)
    assert r.status_code == 200 and r.json()["threshold"] == pytest.approx(higher), r.text
    r = _as(client, door, "/verify", stranger, person_id="p0", threshold=configured)
    assert r.status_code == 200, r.text  # the configured value itself is not lower
    r = post_photo(client, "/verify", stranger, person_id="p0", threshold=lower)  # admin
    assert r.status_code == 200 and r.json()["threshold"] == pytest.approx(lower), r.text


def test_the_data_dir_holds_the_default_sqlite_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FACEGATE_DATABASE_URL", raising=False)
    data = tmp_path / "state" / "here"
    assert make_url(Settings(data_dir=data).database_url).database == str(data / "facegate.db")
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(data))
    assert make_url(Settings().database_url).database == str(data / "facegate.db")
    chosen = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert Settings(data_dir=data, database_url=chosen).database_url == chosen  # an explicit URL wins
    if not models_available():
        pytest.skip("the shipped models are missing")
    monkeypatch.chdir(tmp_path)
    with TestClient(create_app(Settings(data_dir=data, admin_key=ADMIN_KEY))) as client:
        assert client.get("/readyz").status_code == 200
    assert (data / "facegate.db").is_file()
    assert not (tmp_path / "var").exists()
