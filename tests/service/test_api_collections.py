"""Collections over HTTP: a door's 200 people answer with their own 1:N threshold, keys bound to a
collection, membership edits, GET /collections, a restart (issue 14 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from service.decisions import identify_threshold
from tests.service.api_helpers import assert_problem, post_photo

DOOR = 200  # people at the door (one of them enrolled from a photo)
SITE = 1000  # people in the default collection, stored through the gallery


def _synthetic(client, count: int, prefix: str, collections, seed: int) -> None:
    """``count`` people with random unit embeddings, written through the gallery's storage layer."""
    gallery = client.app.state.facegate.recognizer.gallery
    rng = np.random.default_rng(seed)
    for i in range(count):
        v = rng.standard_normal(gallery.index.dim).astype(np.float32)
        gallery.enroll(
            f"{prefix}{i}",
            f"{prefix} {i}",
            _PNG,
            {},
            f"{i:064x}",
            v / np.linalg.norm(v),
            collections=collections,
        )


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(buf, "PNG")
    return buf.getvalue()


_PNG = _png()


@pytest.fixture
def site(make_client, lfw_people):
    """A default collection of SITE people and a door of DOOR (one of them Ann, from a photo)."""
    client = make_client()
    ann = sorted(lfw_people[0].glob("*.jpg"))
    bob = sorted(lfw_people[1].glob("*.jpg"))
    _synthetic(client, SITE, "site-", None, 1)
    _synthetic(client, DOOR - 1, "door-", ["door"], 2)
    r = post_photo(
        client, "/enroll", ann[0], name="Ann", person_id="ann", face_selection="largest", collection="door"
    )
    assert r.status_code == 201, r.text
    assert r.json()["person"]["collections"] == ["door"]
    r = post_photo(client, "/enroll", bob[0], name="Bob", person_id="bob", face_selection="largest")
    assert r.status_code == 201, r.text
    return client, ann, bob


def _key(client, collection: str | None, scopes=("verify",)) -> dict:
    body = {"name": f"door terminal {collection}", "scopes": list(scopes)}
    if collection is not None:
        body["collection"] = collection
    r = client.post("/keys", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["collection"] == collection
    return {"Authorization": f"Bearer {r.json()['key']}"}


def test_the_door_answers_with_its_own_smaller_threshold(site):
    client, ann, bob = site
    state = client.app.state.facegate
    cal, fpir = state.recognizer.card.calibration, state.settings.target_fpir

    door = post_photo(client, "/identify", ann[1], collection="door").json()
    assert door["collections"] == ["door"] and door["gallery_size"] == DOOR
    assert door["threshold"] == pytest.approx(identify_threshold(cal, fpir, DOOR).score)
    assert f"gallery of {DOOR} " in door["threshold_basis"]
    assert door["result"] == "match" and door["person"]["person_id"] == "ann"

    everyone = post_photo(client, "/identify", ann[1]).json()  # default: the site, not the door
    assert everyone["collections"] == ["default"] and everyone["gallery_size"] == SITE + 1
    assert everyone["threshold"] == pytest.approx(identify_threshold(cal, fpir, SITE + 1).score)
    assert everyone["threshold"] > door["threshold"]  # a smaller N, a lower bar at the same FPIR
    assert everyone["result"] == "unknown"  # Ann is not in default

    both = post_photo(client, "/identify", ann[1], collections="door,default").json()
    assert both["gallery_size"] == DOOR + SITE + 1 and both["person"]["person_id"] == "ann"
    r = client.post("/identify", json={"image_base64": _b64(bob[1]), "collections": ["default", "door"]})
    assert r.status_code == 200 and r.json()["person"]["person_id"] == "bob"

    assert_problem(post_photo(client, "/identify", ann[1], collection="nowhere"), 404, "collection_not_found")
    assert_problem(post_photo(client, "/identify", ann[1], collection="a b"), 422, "invalid_request")
    assert_problem(
        post_photo(client, "/identify", ann[1], collection="door", collections="door"), 422, "invalid_request"
    )
    listed = {c["name"]: c for c in client.get("/collections").json()}
    assert listed["door"] == {"name": "door", "people": DOOR, "gallery_size": DOOR}
    assert listed["default"] == {"name": "default", "people": SITE + 1, "gallery_size": SITE + 1}


def _b64(path) -> str:
    import base64

    return base64.b64encode(path.read_bytes()).decode()


def test_the_duplicate_check_searches_the_named_collections(site):
    client, ann, _ = site
    # Ann is at the door: enrolling her face again there is a duplicate, in default it is not
    r = post_photo(
        client,
        "/enroll",
        ann[2],
        name="Ann 2",
        person_id="ann-2",
        face_selection="largest",
        collection="door",
    )
    body = assert_problem(r, 409, "duplicate_face")
    assert body["person_id"] == "ann" and f"gallery of {DOOR} " in body["threshold_basis"]
    r = post_photo(client, "/enroll", ann[2], name="Ann 2", person_id="ann-2", face_selection="largest")
    assert r.status_code == 201 and r.json()["person"]["collections"] == ["default"]


def test_a_key_bound_to_a_collection_searches_only_there(site):
    client, ann, bob = site
    door_key = _key(client, "door")
    listed = {k["name"]: k for k in client.get("/keys").json()}
    assert listed["door terminal door"]["collection"] == "door"

    r = client.post(
        "/identify", files={"image": ("p.jpg", ann[1].read_bytes(), "image/jpeg")}, headers=door_key
    )
    assert r.status_code == 200 and r.json()["collections"] == ["door"] and r.json()["gallery_size"] == DOOR
    assert r.json()["person"]["person_id"] == "ann"
    r = client.post(
        "/identify",
        files={"image": ("p.jpg", bob[1].read_bytes(), "image/jpeg")},
        data={"collection": "door"},
        headers=door_key,
    )
    assert r.status_code == 200 and r.json()["result"] == "unknown"  # Bob is not at the door
    for outside in ({"collection": "default"}, {"collections": "door,default"}):
        r = client.post(
            "/identify",
            files={"image": ("p.jpg", bob[1].read_bytes(), "image/jpeg")},
            data=outside,
            headers=door_key,
        )
        body = assert_problem(r, 403, "collection_forbidden")
        assert body["collection"] == "door"

    # verify: only people in the bound collection
    r = client.post(
        "/verify",
        files={"image": ("p.jpg", ann[1].read_bytes(), "image/jpeg")},
        data={"person_id": "ann"},
        headers=door_key,
    )
    assert r.status_code == 200 and r.json()["match"] is True
    r = client.post(
        "/verify",
        files={"image": ("p.jpg", bob[1].read_bytes(), "image/jpeg")},
        data={"person_id": "bob"},
        headers=door_key,
    )
    assert_problem(r, 403, "collection_forbidden")

    # a bound enrolling key enrols into its collection, and edits memberships only there
    desk = _key(client, "door", scopes=("enroll",))
    assert_problem(client.put("/people/bob/collections/lobby", headers=desk), 403, "collection_forbidden")
    r = client.put("/people/bob/collections/door", headers=desk)
    assert r.status_code == 200 and r.json()["collections"] == ["default", "door"]
    r = client.post(
        "/enroll",
        files={"image": ("p.jpg", bob[2].read_bytes(), "image/jpeg")},
        data={"name": "x", "collection": "lobby", "allow_duplicate": "true"},
        headers=desk,
    )
    assert_problem(r, 403, "collection_forbidden")
    r = client.post(
        "/enroll",
        files={"image": ("p.jpg", bob[2].read_bytes(), "image/jpeg")},
        data={
            "name": "Bob at the door",
            "person_id": "bob-door",
            "face_selection": "largest",
            "allow_duplicate": "true",
            "quality_filter": "none",
        },
        headers=desk,
    )
    assert r.status_code == 201, r.text
    assert r.json()["person"]["collections"] == ["door"]
    assert_problem(
        client.post("/keys", json={"name": "k", "scopes": ["verify"], "collection": "a b"}),
        422,
        "validation_error",
    )


def test_membership_edits_filters_and_restart(site, make_client):
    client, ann, bob = site
    r = client.put("/people/bob/collections/lobby")
    assert r.status_code == 200 and r.json()["collections"] == ["default", "lobby"]
    assert client.put("/people/bob/collections/lobby").json()["collections"] == [
        "default",
        "lobby",
    ]  # idempotent
    r = client.delete("/people/bob/collections/default")
    assert r.status_code == 200 and r.json()["collections"] == ["lobby"]
    assert_problem(client.put("/people/nobody/collections/lobby"), 404, "person_not_found")
    assert client.get("/people/bob").json()["collections"] == ["lobby"]

    found = post_photo(client, "/identify", bob[1], collection="lobby").json()
    assert found["person"]["person_id"] == "bob" and found["gallery_size"] == 1
    assert post_photo(client, "/identify", bob[1]).json()["result"] == "unknown"  # left default

    page = client.get("/people", params={"collection": "lobby"}).json()
    assert page["total"] == 1 and page["items"][0]["person_id"] == "bob"
    assert client.get("/people", params={"collection": "door"}).json()["total"] == DOOR
    assert client.get("/people", params={"collection": "default"}).json()["total"] == SITE
    assert_problem(client.get("/people", params={"collection": "a b"}), 422, "validation_error")
    export = client.get("/people/bob/export").json()
    assert export["person"]["collections"] == ["lobby"]

    r = client.delete("/people/bob/collections/lobby")  # out of every named one: back in default
    assert r.json()["collections"] == ["default"]
    assert_problem(client.delete("/people/bob/collections/default"), 409, "last_collection")
    client.put("/people/bob/collections/lobby")

    again = make_client()  # a restart on the same database
    found = post_photo(again, "/identify", ann[1], collection="door").json()
    assert found["person"]["person_id"] == "ann" and found["gallery_size"] == DOOR
    listed = {c["name"]: c["gallery_size"] for c in again.get("/collections").json()}
    assert listed == {"default": SITE + 1, "door": DOOR, "lobby": 1}
