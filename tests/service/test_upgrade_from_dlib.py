"""An existing dlib gallery upgrades to the default model (SFace) or the fused one (SFace + dlib)
through the lifecycle swap, with no downtime."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from service.model_card import load_card
from service.settings import DEFAULT_MODEL
from tests.service.api_helpers import post_photo
from tests.service.lifecycle_helpers import REPO, start_client

N = 5


def _link(shipped: Path, models: Path, name: str) -> str:
    card = load_card(shipped / name)
    (models / name).mkdir(parents=True)
    (models / name / card.file).symlink_to(shipped / name / card.file)
    shutil.copy(shipped / name / "model.json", models / name / "model.json")
    return card.version


@pytest.mark.lfw
@pytest.mark.parametrize("target", [DEFAULT_MODEL, "fused"])
def test_a_dlib_gallery_moves_to_a_newer_model_without_downtime(
    database_url, tmp_path, lfw_people, target
) -> None:
    shipped = REPO / "models"
    if (
        not all((shipped / n / "model.json").is_file() for n in ("dlib", target))
        or not (shipped / "mtcnn" / "onet.onnx").is_file()
    ):
        pytest.skip(f"models/dlib, models/{target} and models/mtcnn are needed")
    if target == "fused":
        assert load_card(shipped / "fused").fusion, "models/fused records its members"
    models = tmp_path / "models"
    models.mkdir()
    (models / "mtcnn").symlink_to(shipped / "mtcnn", target_is_directory=True)
    old_v, new_v = _link(shipped, models, "dlib"), _link(shipped, models, target)
    client = start_client(database_url, tmp_path, models, model="dlib")  # a deployment on dlib
    try:
        assert client.get("/model").json()["version"] == old_v
        people = lfw_people[:N]
        for i, person in enumerate(people):
            r = post_photo(client, "/enroll", sorted(person.glob("*.jpg"))[0], name=person.name,
                           person_id=f"p{i}", face_selection="largest")  # fmt: skip
            assert r.status_code == 201, r.text
        probes = [(f"p{i}", sorted(p.glob("*.jpg"))[1].read_bytes()) for i, p in enumerate(people)]
        answers: list[tuple[int, dict]] = []
        stop = threading.Event()

        def hammer() -> None:
            k = 0
            while not stop.is_set():
                pid, photo = probes[k % N]
                r = post_photo(client, "/verify", photo, person_id=pid)
                answers.append((r.status_code, r.json()))
                k += 1

        t = threading.Thread(target=hammer)
        t.start()
        try:
            r = client.post(f"/admin/models/{new_v}/activate", params={"wait": "true"})
            assert r.status_code == 200 and r.json()["state"] == "done", r.text
            while not any(b.get("model_version") == new_v for _, b in answers):
                threading.Event().wait(0.05)
        finally:
            stop.set()
            t.join()
        assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
        assert {b["model_version"] for _, b in answers} == {old_v, new_v}
        for pid, photo in probes:  # every person verifies on the new model from the stored crops
            body = post_photo(client, "/verify", photo, person_id=pid).json()
            assert body["model_version"] == new_v and body["match"], body
        body = post_photo(client, "/identify", probes[0][1]).json()
        assert body["result"] == "match" and body["person"]["person_id"] == "p0", body
    finally:
        client.__exit__(None, None, None)
