"""Calibration on the organisation's own photos: POST /admin/calibrate and `facegate calibrate DIR`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.calibration import ImpostorTail, extend_far_table, rates_at
from service.cli import app as cli
from service.model_card import FarPoint, load_card
from service.org_calibration import _labelled
from tests.service.api_helpers import assert_problem
from tests.service.lifecycle_helpers import private_models, start_client

pytestmark = pytest.mark.lfw

PEOPLE, PHOTOS = 24, 3


@pytest.fixture(scope="module")
def labelled_photos(lfw_dir: Path) -> dict[str, bytes]:
    """``identity/photo`` -> JPEG bytes: 3 photos each of 24 LFW people (a reproducible choice)."""
    people = [p for p in sorted((lfw_dir / "images").iterdir()) if len(list(p.glob("*.jpg"))) >= 4]
    return {
        f"{p.name}/{f.name}": f.read_bytes()
        for p in people[10 : 10 + PEOPLE]
        for f in sorted(p.glob("*.jpg"))[:PHOTOS]
    }


def _zip(files: dict[str, bytes], top: str = "") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(f"{top}{name}", data)
    return buf.getvalue()


@pytest.fixture
def setup(tmp_path: Path):
    models = private_models(tmp_path)
    client = start_client(f"sqlite:///{tmp_path / 'g.db'}", tmp_path, models)
    yield client, models
    client.__exit__(None, None, None)


def test_calibrate_publishes_a_new_card_version_and_reports_far_frr(setup, labelled_photos) -> None:
    client, models = setup
    before = client.get("/model").json()
    r = client.post(
        "/admin/calibrate",
        files={"archive": ("photos.zip", _zip(labelled_photos, top="ourpeople/"), "application/zip")},
        data={"target_far": "0.01"},
    )
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["based_on"] == before["version"] and report["version"] != before["version"]
    assert report["people"] == PEOPLE and report["photos"] == PEOPLE * PHOTOS
    n = report["photos_used"]
    assert report["impostor_pairs"] + report["genuine_pairs"] == n * (n - 1) // 2
    assert report["a"] > 0
    assert 0.0 <= report["far"] <= 0.01  # measured on the data at the threshold chosen for 1e-2
    assert 0.0 <= report["frr"] < 0.5
    assert report["threshold"]["far"] == report["far"] and report["threshold"]["frr"] == report["frr"]

    folder = models / report["version"]
    card = load_card(folder)  # the shared ONNX file matches the card's hash
    assert card.sha256 == before["sha256"] and card.parent_version == before["version"]
    assert card.calibration.a == report["a"] and card.calibration.genuine_pairs == report["genuine_pairs"]
    fars = [p.far for p in card.calibration.far_table]
    assert fars == sorted(fars, reverse=True) and fars[-1] <= 1e-5  # stricter rows kept from before
    sims = [p.similarity for p in card.calibration.far_table]
    assert sims == sorted(sims)
    assert json.loads((folder / "calibration_report.json").read_text())["version"] == report["version"]

    listed = {v["version"]: v for v in client.get("/admin/models").json()["versions"]}
    assert report["version"] in listed and listed[before["version"]]["active"]
    r = client.post(f"/admin/models/{report['version']}/activate", params={"wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "done", r.text
    assert client.get("/model").json()["calibration"]["a"] == report["a"]


def test_calibrate_refuses_bad_input_without_publishing(setup, labelled_photos) -> None:
    client, models = setup
    folders = set(models.iterdir())
    r = client.post("/admin/calibrate", files={"archive": ("x.zip", b"not a zip", "application/zip")})
    assert_problem(r, 422, "invalid_request")
    few = dict(list(labelled_photos.items())[:6])  # 2 people: too few pairs
    r = client.post("/admin/calibrate", files={"archive": ("x.zip", _zip(few), "application/zip")})
    body = assert_problem(r, 422, "invalid_request")
    assert body["genuine_pairs"] < 10
    key = client.post("/keys", json={"name": "door", "scopes": ["verify"]}).json()["key"]
    r = client.post(
        "/admin/calibrate",
        files={"archive": ("x.zip", _zip(labelled_photos), "application/zip")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert_problem(r, 403, "forbidden")
    assert set(models.iterdir()) == folders


def test_cli_calibrates_a_folder(tmp_path: Path, labelled_photos, monkeypatch) -> None:
    models = private_models(tmp_path)
    folder = tmp_path / "ours"
    for name, data in labelled_photos.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    monkeypatch.setenv("FACEGATE_DATA_DIR", str(tmp_path / "var"))
    result = CliRunner().invoke(cli, ["calibrate", str(folder), "--models-dir", str(models)])
    assert result.exit_code == 0, result.output
    published = [p for p in models.iterdir() if p.name not in ("default", "mtcnn")]
    assert (
        len(published) == 1
        and load_card(published[0]).parent_version == load_card(models / "default").version
    )


def test_pairs_csv_restricts_the_pairs() -> None:
    files = {f"p{i}/{k}.jpg": b"x" for i in range(3) for k in range(2)}
    files["pairs.csv"] = b"a,b,same\np0/0.jpg,p0/1.jpg,1\np0/0.jpg,p1/0.jpg,0\n"
    data = _labelled(files)
    assert data.pairs == [("p0/0.jpg", "p0/1.jpg", True), ("p0/0.jpg", "p1/0.jpg", False)]
    assert len(data.photos) == 6


def test_far_table_extension_keeps_stricter_rows_monotone() -> None:
    estimated = [FarPoint(far=1e-1, similarity=0.5), FarPoint(far=1e-2, similarity=0.7)]
    previous = [FarPoint(far=f, similarity=s) for f, s in ((1e-2, 0.6), (1e-3, 0.65), (1e-4, 0.8))]
    table = extend_far_table(estimated, previous)
    assert [(p.far, p.similarity) for p in table] == [(1e-1, 0.5), (1e-2, 0.7), (1e-3, 0.7), (1e-4, 0.8)]


def test_rates_at_a_threshold() -> None:
    genuine, impostor = np.array([0.9, 0.8, 0.4]), np.array([0.1, 0.5, 0.85, 0.2])
    assert rates_at(genuine, impostor, 0.8) == (0.25, pytest.approx(1 / 3))
    tail = ImpostorTail()
    tail.add(impostor)
    assert tail.count_above(0.8) == 1
