"""Zero-downtime model swap: verifications keep answering during a swap, each with one model version."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.model_card import Alignment, load_card
from service.pipeline.align import align_face
from service.settings import DEFAULT_MODEL
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.lifecycle_helpers import active_version, add_version, private_models, start_client

pytestmark = pytest.mark.lfw

N = 6


def _expected_score(card, similarity: float) -> float:
    z = card.calibration.a * similarity + card.calibration.b
    return 1.0 / (1.0 + math.exp(-z))


@pytest.fixture
def swap_setup(database_url: str, tmp_path: Path, lfw_people):
    models = private_models(tmp_path)
    old = load_card(models / DEFAULT_MODEL)
    # the same network under another version, with another calibration: a response whose score
    # mixed one version's similarity with the other's calibration would show
    new = add_version(
        models,
        "swap-b",
        calibration={
            **old.calibration.model_dump(mode="json"),
            "a": old.calibration.a * 0.8,
            "b": old.calibration.b + 1.0,
        },
    )
    clients = []

    def start(**overrides):
        c = start_client(database_url, tmp_path, models, **overrides)
        clients.append(c)
        return c

    client = start()
    people = lfw_people[:N]
    for i, person in enumerate(people):
        r = post_photo(client, "/enroll", sorted(person.glob("*.jpg"))[0], name=person.name, person_id=f"p{i}",
                       face_selection="largest")  # fmt: skip
        assert r.status_code == 201, r.text
    yield client, start, models, {old.version: old, new.version: new}, people
    for c in clients:
        c.__exit__(None, None, None)


def test_verifications_never_fail_during_a_swap_and_each_uses_one_version(swap_setup, lfw_people) -> None:
    client, start, models, cards, people = swap_setup
    old_v, new_v = list(cards)
    probes = [(f"p{i}", sorted(p.glob("*.jpg"))[1].read_bytes()) for i, p in enumerate(people)]
    answers: list[tuple[int, dict]] = []
    stop = threading.Event()
    switched = threading.Event()
    after_switch: list[dict] = []

    def hammer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            pid, photo = probes[int(rng.integers(len(probes)))]
            started_after_switch = switched.is_set()
            r = post_photo(client, "/verify", photo, person_id=pid)
            answers.append((r.status_code, r.json()))
            if started_after_switch:
                after_switch.append(r.json())

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    try:
        while len(answers) < 3:  # the old version answers first
            threading.Event().wait(0.05)
        # an enrolment while the swap runs must reach the new version's index too
        job = client.post(f"/admin/models/{new_v}/activate").json()
        assert job["state"] in ("running", "done") and job["version"] == new_v
        late = lfw_people[N]
        r = post_photo(client, "/enroll", sorted(late.glob("*.jpg"))[0], name="late", person_id="late",
                       face_selection="largest")  # fmt: skip
        assert r.status_code == 201, r.text
        r = client.post(f"/admin/models/{new_v}/activate", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        switched.set()
        while len(after_switch) < 6:
            threading.Event().wait(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert len(answers) >= 10
    assert all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:3]
    seen = {body["model_version"] for _, body in answers}
    assert seen == {old_v, new_v}
    for _, body in answers:  # score and threshold both from the version the response names
        card = cards[body["model_version"]]
        assert body["score"] == pytest.approx(_expected_score(card, body["similarity"]), abs=1e-6)
        assert body["threshold"] == pytest.approx(
            _expected_score(card, card.calibration.similarity_at_far(1e-3)), abs=1e-6
        )
    assert {b["model_version"] for b in after_switch} == {new_v}

    assert client.get("/model").json()["version"] == new_v
    listed = client.get("/admin/models").json()
    assert listed["active"] == new_v and listed["previous"] == old_v
    assert {v["version"] for v in listed["versions"]} >= {old_v, new_v}
    late_probe = sorted(lfw_people[N].glob("*.jpg"))[1]
    body = post_photo(client, "/verify", late_probe, person_id="late").json()
    assert body["model_version"] == new_v and body["match"], body
    person = client.get("/people/late").json()
    assert set(person["model_versions"]) == {old_v, new_v}
    assert active_version(models) == new_v

    # rollback is the same call; a restart comes back on the version activated last
    r = client.post(f"/admin/models/{old_v}/activate", params={"wait": "true"})
    assert r.json()["state"] == "done"
    assert post_photo(client, "/verify", late_probe, person_id="late").json()["model_version"] == old_v
    client.post(f"/admin/models/{new_v}/activate", params={"wait": "true"})
    restarted = start()
    assert restarted.get("/model").json()["version"] == new_v
    assert restarted.get("/readyz").json()["model_version"] == new_v


def test_activation_errors(swap_setup) -> None:
    client, _, _, cards, _ = swap_setup
    assert_problem(client.post("/admin/models/nope/activate"), 404, "model_not_found")
    old_v = list(cards)[0]
    job = client.post(f"/admin/models/{old_v}/activate").json()
    assert job["state"] == "done" and job["step"] == "already active"


def test_watching_adopts_a_newly_published_version(swap_setup) -> None:
    client, start, models, cards, _ = swap_setup
    watcher = start(watch_models=True, watch_interval=0.2)
    lifecycle = watcher.app.state.facegate.lifecycle
    assert lifecycle.watch_once() is None  # the versions present at start are not "new"
    add_version(models, "swap-c", minutes=5)
    job = lifecycle.watch_once() or lifecycle.job()
    assert job is not None and job.version == "swap-c"
    job.done.wait(120)
    assert watcher.get("/model").json()["version"] == "swap-c"


def test_crops_are_realigned_for_another_template() -> None:
    """Re-embedding a stored crop for a model with another template gives what aligning the photo
    for that model gives (inside the old crop)."""
    from service.crop_embed import realign

    rng = np.random.default_rng(0)
    photo = (rng.random((300, 300, 3)) * 255).astype(np.uint8)
    # smooth, so that resampling twice stays close to resampling once
    photo = np.asarray(Image.fromarray(photo).resize((60, 60)).resize((300, 300)), dtype=np.uint8)
    landmarks = np.array([[120, 130], [180, 128], [150, 165], [125, 200], [176, 198]], float)
    src = Alignment(
        size=(150, 150), template=[(47.5, 46.6), (100.5, 46.6), (74.0, 76.6), (50.4, 103.0), (97.6, 103.0)]
    )
    dst = Alignment(
        size=(112, 112), template=[(38.3, 51.7), (73.5, 51.5), (56.0, 71.7), (41.5, 92.4), (70.7, 92.2)]
    )
    crop = align_face(photo, landmarks, np.asarray(src.template), src.size)
    meta = {
        "face": {"landmarks": landmarks.tolist()},
        "alignment": {"size": [150, 150], "template": src.template},
    }
    again = realign(crop, meta, dst).astype(float)
    direct = align_face(photo, landmarks, np.asarray(dst.template), dst.size).astype(float)
    inner = (slice(30, 90), slice(30, 90))
    assert np.abs(again[inner] - direct[inner]).mean() < 4.0
    assert realign(crop, meta, src) is crop  # same alignment: used as it is
