"""End to end on real LFW photos: enrol 20 people, verify, identify, delete, restart."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from tests.service.api_helpers import assert_problem, post_photo, snapshot

pytestmark = pytest.mark.lfw

N = 20


@pytest.fixture
def enrolled(make_client, lfw_people):
    client = make_client()
    people = lfw_people[:N]
    for i, person in enumerate(people):
        photo = sorted(person.glob("*.jpg"))[0]
        r = post_photo(
            client,
            "/enroll",
            photo,
            as_json=bool(i % 2),
            name=person.name.replace("_", " "),
            person_id=f"p{i:02d}",
            face_selection="largest",
        )
        assert r.status_code == 201, (person.name, r.text)
        body = r.json()
        assert body["person"]["person_id"] == f"p{i:02d}" and body["model_version"]
        assert body["quality"]["eye_distance"] > 0
    return client, people


def test_verify_same_and_other_people(enrolled):
    client, people = enrolled
    genuine = impostor = 0
    for i, person in enumerate(people):
        probe = sorted(person.glob("*.jpg"))[1]
        r = post_photo(client, "/verify", probe, person_id=f"p{i:02d}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"match", "score", "threshold", "similarity", "model_version", "face"}
        assert 0.0 <= body["score"] <= 1.0 and body["match"] == (body["score"] >= body["threshold"])
        genuine += body["match"]
        other = post_photo(client, "/verify", probe, person_id=f"p{(i + 1) % N:02d}").json()
        impostor += other["match"]
    assert genuine >= N - 2, f"only {genuine}/{N} genuine pairs accepted"
    assert impostor == 0, f"{impostor} impostor pairs accepted"


def test_identify_known_and_unknown(enrolled, lfw_people):
    client, people = enrolled
    known = 0
    for i, person in enumerate(people):
        body = post_photo(client, "/identify", sorted(person.glob("*.jpg"))[2]).json()
        assert body["gallery_size"] == N and body["threshold_basis"]
        if body["result"] == "match":
            assert body["person"]["person_id"] == f"p{i:02d}"
            known += 1
    assert known >= N - 3
    strangers = lfw_people[N : N + 20]
    matched = 0
    for person in strangers:
        body = post_photo(client, "/identify", sorted(person.glob("*.jpg"))[0], top_k=3).json()
        assert body["result"] in ("unknown", "match", "ambiguous")
        assert len(body["candidates"]) == 3
        if body["result"] == "unknown":
            assert body["person"] is None and body["score"] < body["threshold"]
        matched += body["result"] != "unknown"
    assert matched <= 1, f"{matched} of {len(strangers)} strangers were identified"


def test_delete_removes_everything_and_restart_keeps_the_rest(enrolled, make_client):
    client, people = enrolled
    export = client.get("/people/p03/export").json()
    assert export["person"]["person_id"] == "p03" and export["embeddings"] and export["reference_crop"]
    assert export["reference_crop"]["kind"] == "canvas"
    pk = _pk(client, "p03")
    assert client.delete("/people/p03").status_code == 204
    assert_problem(client.get("/people/p03"), 404, "person_not_found")
    assert_problem(client.get("/people/p03/export"), 404, "person_not_found")
    assert_problem(client.delete("/people/p03"), 404, "person_not_found")
    stored = snapshot(client)
    # no text names them (binary columns left out: a PNG may hold the bytes "p03" by chance)
    assert "p03" not in repr(_text_values(client, skip=("change_log", "audit")))
    with client.app.state.facegate.engine.connect() as conn:
        for table in ("people", "reference_crops", "embeddings"):
            column = "id" if table == "people" else "person_pk"
            assert (
                conn.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = :pk"), {"pk": pk}).scalar()
                == 0
            )
    assert len(stored["_index"]) == N - 1
    body = post_photo(client, "/identify", sorted(people[3].glob("*.jpg"))[1]).json()
    assert body["result"] != "match" or body["person"]["person_id"] != "p03"
    assert client.get("/people", params={"limit": 7}).json()["total"] == N - 1

    client.__exit__(None, None, None)
    restarted = make_client()
    assert snapshot(restarted) == stored
    assert post_photo(restarted, "/verify", sorted(people[5].glob("*.jpg"))[1], person_id="p05").json()[
        "match"
    ]


def _pk(client, person_id: str) -> int:
    with client.app.state.facegate.engine.connect() as conn:
        return conn.execute(text("SELECT id FROM people WHERE person_id = :p"), {"p": person_id}).scalar_one()


def _text_values(client, skip: tuple[str, ...]) -> list:
    """Every non-binary value of every table but ``skip`` (and Alembic's)."""
    out = []
    with client.app.state.facegate.engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table in (*skip, "alembic_version"):
                continue
            for row in conn.execute(text(f"SELECT * FROM {table}")).mappings():
                out += [v for v in row.values() if not isinstance(v, bytes | memoryview)]
    return out


def test_people_pages_and_search(enrolled):
    client, _ = enrolled
    seen = []
    for offset in range(0, N, 7):
        page = client.get("/people", params={"offset": offset, "limit": 7}).json()
        assert page["total"] == N
        seen += [p["person_id"] for p in page["items"]]
    assert sorted(seen) == [f"p{i:02d}" for i in range(N)]
    hits = client.get("/people", params={"q": "p1"}).json()
    assert hits["total"] == 10
    assert client.get("/people/p01/crop").headers["content-type"] == "image/png"


def test_metrics_and_model(enrolled):
    client, people = enrolled
    post_photo(client, "/verify", sorted(people[0].glob("*.jpg"))[1], person_id="p00")
    text = client.get("/metrics").text
    assert 'facegate_requests_total{method="POST",route="/verify",status="200"}' in text
    assert "facegate_score_bucket" in text and f"facegate_gallery_size {float(N)}" in text
    card = client.get("/model").json()
    assert card["calibration"]["far_table"] and card["execution_providers"]


def test_face_selection_all(enrolled):
    from PIL import Image

    from tests.service.conftest import jpeg

    client, people = enrolled
    a = Image.open(sorted(people[0].glob("*.jpg"))[1])
    b = Image.open(sorted(people[1].glob("*.jpg"))[1])
    both = Image.new("RGB", (500, 250))
    both.paste(a, (0, 0))
    both.paste(b, (250, 0))
    body = post_photo(client, "/identify", jpeg(both), face_selection="all").json()
    ids = {f["person"]["person_id"] for f in body["faces"] if f["result"] == "match"}
    assert {"p00", "p01"} <= ids, body
    assert len(body["faces"]) >= 2
