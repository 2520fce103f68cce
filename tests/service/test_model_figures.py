"""GET /model states the thresholds /verify and /identify decide with now; GET /model/figures/{name}
serves the figures of the model in use and nothing else."""

from __future__ import annotations

import pytest

from service.decisions import identify_threshold, verify_threshold
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.conftest import jpeg


def test_model_states_the_verify_and_identify_operating_points(make_client):
    client = make_client(target_far=1e-3, target_fpir=0.01)
    card = client.get("/model").json()
    points = card["operating_points"]
    assert points["verify"]["far"] == 1e-3
    assert "1e-3" not in points["verify"]["basis"] and "0.001" in points["verify"]["basis"]
    # an empty gallery counts as one person: f = FPIR / 1
    assert points["identify"] | {"basis": ""} == {
        "far": 0.01, "fpir": 0.01, "gallery_size": 0, "basis": "",
        "similarity": points["identify"]["similarity"], "score": points["identify"]["score"],
    }  # fmt: skip
    state = client.app.state.facegate
    cal = state.recognizer.card.calibration
    assert points["verify"]["similarity"] == pytest.approx(verify_threshold(cal, 1e-3, None).similarity)
    assert points["identify"]["similarity"] == pytest.approx(identify_threshold(cal, 0.01, 1).similarity)


@pytest.mark.lfw
def test_identify_operating_point_follows_the_gallery_size(make_client, lfw_people):
    from PIL import Image

    client = make_client(target_fpir=0.01)
    for i, person in enumerate(lfw_people[:4]):
        photo = jpeg(Image.open(sorted(person.glob("*.jpg"))[0]))
        r = post_photo(client, "/enroll", photo, name=f"P{i}", person_id=f"p{i}", face_selection="largest")
        assert r.status_code == 201, r.text
    point = client.get("/model").json()["operating_points"]["identify"]
    assert point["gallery_size"] == 4 and point["far"] == pytest.approx(0.0025)
    assert "gallery of 4" in point["basis"]


def test_figures_of_the_model_in_use_are_served(client):
    state = client.app.state.facegate
    _, entry = state.lifecycle.current_with_entry()
    names = client.get("/model").json()["figures"]
    assert names == sorted(p.name for p in (entry.folder / "figures").glob("*.png")) and names
    for name in names:
        r = client.get(f"/model/figures/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (entry.folder / "figures" / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "..%2Fmodel.json",
        "%2E%2E%2Fmodel.json",
        "..%2F..%2Fpyproject.toml",
        "figures%2Froc_det.png",
        "..%5Cmodel.json",
        ".hidden.png",
        "model.json",
        "roc_det.png%00.png",
    ],
)
def test_a_name_with_a_path_or_another_type_is_refused(client, name):
    body = assert_problem(client.get(f"/model/figures/{name}"), 422, "invalid_figure_name")
    assert "folder" in body["detail"]


def test_an_unknown_figure_is_not_found_and_lists_the_figures(client):
    body = assert_problem(client.get("/model/figures/nothing.png"), 404, "figure_not_found")
    assert body["figures"] == client.get("/model").json()["figures"]


def test_figures_need_an_admin_key(client):
    name = client.get("/model").json()["figures"][0]
    r = client.get(f"/model/figures/{name}", headers={"Authorization": ""})
    assert_problem(r, 401, "unauthorized")
    key = client.post("/keys", json={"name": "door", "scopes": ["verify"]}).json()
    r = client.get(f"/model/figures/{name}", headers={"Authorization": f"Bearer {key['key']}"})
    assert_problem(r, 403, "forbidden")
