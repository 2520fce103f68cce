"""Calibration on the organisation's own photos: POST /admin/calibrate and `facegate calibrate DIR`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from service.calibration import ImpostorTail, measured_far_table
from service.cli import app as cli
from service.decisions import identify_threshold, verify_threshold
from service.model_card import Calibration, FarPoint, load_card
from service.org_calibration import _labelled
from service.settings import DEFAULT_MODEL
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
    assert fars == sorted(fars, reverse=True)
    # measured on this calibration's own impostor pairs only: the table stops where they do
    assert fars[-1] * report["impostor_pairs"] >= 10 and fars[-1] == report["far_estimated_down_to"]
    assert "not tabulated" in card.calibration.data and "previous" not in card.calibration.data
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
    published = [p for p in models.iterdir() if p.name not in (DEFAULT_MODEL, "mtcnn")]
    assert (
        len(published) == 1
        and load_card(published[0]).parent_version == load_card(models / DEFAULT_MODEL).version
    )


def test_pairs_csv_restricts_the_pairs() -> None:
    files = {f"p{i}/{k}.jpg": b"x" for i in range(3) for k in range(2)}
    files["pairs.csv"] = b"a,b,same\np0/0.jpg,p0/1.jpg,1\np0/0.jpg,p1/0.jpg,0\n"
    data = _labelled(files)
    assert data.pairs == [("p0/0.jpg", "p0/1.jpg", True), ("p0/0.jpg", "p1/0.jpg", False)]
    assert len(data.photos) == 6


def test_far_table_stops_where_the_measured_pairs_do() -> None:
    """One policy: thresholds only from this version's own impostor pairs, at the rates they support."""
    tail = ImpostorTail()
    tail.add(np.random.default_rng(0).uniform(-0.5, 0.5, 20_000))  # 20,000 pairs: down to 5e-4 at 10
    table, note = measured_far_table(tail, min_tail=10)
    assert [p.far for p in table][-1] == 5e-4 and all(p.far * tail.total >= 10 for p in table)
    assert "down to 0.0005" in note and "not tabulated" in note and "50000 impostor pairs" in note
    for p in table:  # each row is the measured tail: at most far * total pairs at or above it
        assert tail.count_above(p.similarity) <= p.far * tail.total
    few = ImpostorTail()
    few.add(np.zeros(5))
    assert measured_far_table(few)[0] == []


def test_a_rate_beyond_the_table_is_stated_not_invented() -> None:
    cal = Calibration(
        a=10.0, b=-5.0, far_table=[FarPoint(far=1e-2, similarity=0.5), FarPoint(far=1e-3, similarity=0.6)]
    )
    inside = identify_threshold(cal, target_fpir=0.01, gallery_size=10)  # 1e-3 per comparison
    assert inside.similarity == pytest.approx(0.6) and "not guaranteed" not in inside.basis
    beyond = identify_threshold(cal, target_fpir=0.01, gallery_size=1000)  # 1e-5: not measured
    assert beyond.similarity == pytest.approx(0.6)  # the strictest measured threshold, never looser
    assert "stricter than the 0.001" in beyond.basis and "not guaranteed" in beyond.basis
    assert "not guaranteed" in verify_threshold(cal, 1e-4, None).basis


def test_impostor_tail_counts_above_a_threshold() -> None:
    impostor = np.array([0.1, 0.5, 0.85, 0.2])
    tail = ImpostorTail()
    tail.add(impostor)
    assert tail.count_above(0.8) == 1
