"""What an operator scrapes from /metrics (issue 13, item 1), through the HTTP app.

The process and Python collectors, build and model info, decisions per model version, score and
similarity buckets placed where the shipped models' thresholds are, problems by code, requests in
flight, swap progress and failures, replication position and lag, the read-only ``metrics``
scope, and the Grafana dashboard's queries against a live scrape.
"""

from __future__ import annotations

import json
import math
import platform
import re
import threading
import time
from collections import defaultdict
from pathlib import Path

import onnxruntime
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service import __version__
from service.api import problems
from service.api.metrics import MetricsMiddleware
from service.auth import SCOPES
from service.decisions import verify_threshold
from service.metrics import Metrics
from service.model_card import load_card
from service.settings import DEFAULT_MODEL
from tests.service.api_helpers import assert_problem, post_photo
from tests.service.lifecycle_helpers import add_version, private_models, start_client
from tests.service.test_api_errors import noise_photo

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "facegate-dashboard.json"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus when it scrapes, not in /metrics

Samples = dict[str, list[Sample]]


def parse(text: str) -> Samples:
    out: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name].append(sample)
    return out


def scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())


def bounds(samples: Samples, name: str) -> list[float]:
    return sorted({float(s.labels["le"]) for s in samples[name] if s.labels["le"] != "+Inf"})


def bucket_width(edges: list[float], x: float) -> float:
    """The width of the histogram bucket ``x`` falls in (``edges``: the finite upper bounds)."""
    upper = next(i for i, b in enumerate(edges) if x <= b)
    width = edges[upper] - (edges[upper - 1] if upper else -math.inf)
    return round(width, 9)  # 0.91 - 0.9 is 0.010000000000000009


def enrol(client: TestClient, person: Path, person_id: str) -> None:
    photo = sorted(person.glob("*.jpg"))[0]
    r = post_photo(client, "/enroll", photo, name=person.name, person_id=person_id, face_selection="largest")
    assert r.status_code == 201, r.text


def probe(person: Path) -> Path:
    return sorted(person.glob("*.jpg"))[1]


# ---- what runs: process, Python, build, model ----


def test_process_python_build_and_model_info_are_exported(client) -> None:
    m = scrape(client)
    assert value(m, "process_resident_memory_bytes") > 10_000_000
    assert value(m, "process_cpu_seconds_total") > 0
    assert value(m, "process_open_fds") > 0
    (py,) = m["python_info"]
    assert py.labels["version"] == platform.python_version()
    assert "python_gc_collections_total" in m and "python_gc_objects_collected_total" in m

    (build,) = m["facegate_build_info"]
    assert build.labels == {
        "version": __version__,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }
    card = client.get("/model").json()
    (model,) = m["facegate_model_info"]
    assert model.labels == {"version": card["version"], "name": card["name"], "sha256": card["sha256"]}
    state = client.app.state.facegate
    threshold = verify_threshold(state.recognizer.card.calibration, state.settings.target_far, None)
    assert value(m, "facegate_verify_threshold", scale="score") == pytest.approx(threshold.score)
    assert value(m, "facegate_verify_threshold", scale="similarity") == pytest.approx(threshold.similarity)


# ---- decisions: model_version, score and similarity buckets ----


def _shipped_thresholds() -> list[tuple[str, float, float, float]]:
    """(model, far, similarity, score) of every shipped model's thresholds from FAR 1e-3 to 1e-6."""
    out = []
    for folder in sorted((REPO / "models").iterdir()):
        if not (folder / "model.json").is_file() or folder.name == "mtcnn":
            continue
        cal = load_card(folder, verify_hash=False).calibration
        for point in cal.far_table:
            if 1e-6 <= point.far <= 1e-3:
                out.append((folder.name, point.far, point.similarity, cal.score(point.similarity)))
    assert {t[0] for t in out} >= {"sface", "dlib"}, out
    return out


@pytest.mark.lfw
def test_decisions_carry_the_model_version_and_buckets_are_fine_at_the_thresholds(client, lfw_people) -> None:
    alice, bob = lfw_people[0], lfw_people[1]
    enrol(client, alice, "alice")
    enrol(client, bob, "bob")
    same = post_photo(client, "/verify", probe(alice), person_id="alice").json()
    other = post_photo(client, "/verify", probe(bob), person_id="alice").json()
    found = post_photo(client, "/identify", probe(alice)).json()
    assert same["match"] and not other["match"] and found["result"] == "match"
    version = same["model_version"]

    m = scrape(client)
    for operation, result, n in (("verify", "match", 1), ("verify", "no_match", 1), ("identify", "match", 1)):
        labels = {"operation": operation, "result": result, "model_version": version}
        assert value(m, "facegate_decisions_total", **labels) == n
    assert value(m, "facegate_score_count", operation="verify", model_version=version) == 2
    assert value(m, "facegate_similarity_count", operation="verify", model_version=version) == 2
    assert value(m, "facegate_similarity_count", operation="identify", model_version=version) == 1
    assert value(m, "facegate_similarity_sum", operation="verify", model_version=version) == pytest.approx(
        same["similarity"] + other["similarity"]
    )

    scores, sims = bounds(m, "facegate_score_bucket"), bounds(m, "facegate_similarity_bucket")
    # a genuine match no longer shares one 0.95-1 bucket with every other match
    assert bucket_width(scores, same["score"]) <= 0.01, (same["score"], scores)
    assert bucket_width(sims, same["similarity"]) <= 0.025
    for model, far, similarity, score in _shipped_thresholds():
        fine = 0.01 if score >= 0.9 else 0.05
        assert bucket_width(scores, score) <= fine, (model, far, score, scores)
        assert bucket_width(sims, similarity) <= 0.025, (model, far, similarity, sims)
    # stage and request times: buckets below 5 ms
    for name in ("facegate_stage_seconds_bucket", "facegate_request_seconds_bucket"):
        edges = bounds(m, name)
        assert {0.0005, 0.001, 0.002} <= set(edges) and len([b for b in edges if b < 0.005]) >= 4, edges


# ---- problems by code, in flight ----


@pytest.mark.lfw
def test_every_problem_is_counted_by_code_and_status(make_client, lfw_people) -> None:
    client = make_client(min_eye_distance=500)  # every LFW face is too small to enrol: low_quality
    face = sorted(lfw_people[0].glob("*.jpg"))[0]
    door = client.post("/keys", json={"name": "door", "scopes": ["verify"]}).json()["key"]
    assert_problem(
        post_photo(client, "/enroll", face, name="x", face_selection="largest"), 422, "low_quality"
    )
    assert_problem(post_photo(client, "/enroll", noise_photo(), name="x"), 422, "no_face")
    assert_problem(post_photo(client, "/enroll", noise_photo(), name="x"), 422, "no_face")
    assert_problem(post_photo(client, "/verify", face, person_id="nobody"), 404, "person_not_found")
    assert_problem(client.get("/people", params={"limit": 0}), 422, "validation_error")
    assert_problem(client.get("/people", headers={"Authorization": f"Bearer {door}"}), 403, "forbidden")
    assert_problem(client.get("/nowhere"), 404, "not_found")
    assert_problem(client.get("/enroll"), 405, "method_not_allowed")
    # answered by the key check before the body is read, outside any route: still under /enroll
    anonymous = client.post("/enroll", headers={"Authorization": "Bearer nope"}, data={"name": "x"})
    assert_problem(anonymous, 401, "unauthorized")

    m = scrape(client)
    expected = [
        ("low_quality", "422", "/enroll", 1),
        ("no_face", "422", "/enroll", 2),
        ("person_not_found", "404", "/verify", 1),
        ("validation_error", "422", "/people", 1),
        ("forbidden", "403", "/people", 1),
        ("not_found", "404", "unmatched", 1),
        ("method_not_allowed", "405", "/enroll", 1),
        ("unauthorized", "401", "/enroll", 1),
    ]
    for code, status, route, n in expected:
        assert value(m, "facegate_problems_total", code=code, status=status, route=route) == n, code
    # every error answered is counted once under its code: per route and status, problems == requests
    for s in m["facegate_requests_total"]:
        if int(s.labels["status"]) >= 400:
            route, status = s.labels["route"], s.labels["status"]
            assert value(m, "facegate_problems_total", route=route, status=status) == s.value, s.labels


def test_an_unexpected_error_is_counted_as_internal_error() -> None:
    """The 500 Starlette answers outside the middleware is counted as ``internal_error``."""
    metrics = Metrics()
    app = FastAPI()
    problems.install(app)

    @app.get("/boom/{n}")
    def boom(n: int) -> None:
        raise RuntimeError("unexpected")

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert_problem(c.get("/boom/1"), 500, "internal_error")
    m = parse(generate_latest(metrics.registry).decode())
    assert value(m, "facegate_problems_total", code="internal_error", status="500", route="/boom/{n}") == 1
    assert value(m, "facegate_requests_total", route="/boom/{n}", status="500") == 1
    assert value(m, "facegate_requests_in_flight") == 0


def test_requests_in_flight(client) -> None:
    photo = noise_photo()  # the detector runs, then 422 no_face: a request that takes a while
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            post_photo(client, "/identify", photo)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    seen = 0.0
    try:
        deadline = time.monotonic() + 30
        while seen < 2 and time.monotonic() < deadline:
            seen = max(seen, value(scrape(client), "facegate_requests_in_flight"))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen >= 2  # the scrape itself and at least one /identify
    m = scrape(client)
    assert value(m, "facegate_requests_in_flight") == 1  # only the scrape: every other one ended
    assert value(m, "facegate_requests_total", route="/identify", status="422") >= 1


# ---- model swaps ----


@pytest.mark.lfw
def test_swap_progress_and_failures(database_url: str, tmp_path: Path, lfw_people) -> None:
    models = private_models(tmp_path)
    old = load_card(models / DEFAULT_MODEL)
    new = add_version(
        models,
        "swap-b",
        calibration={**old.calibration.model_dump(mode="json"), "b": old.calibration.b + 1.0},
    )
    add_version(models, "broken", minutes=2, sha256="0" * 64)  # its ONNX file does not match
    client = start_client(database_url, tmp_path, models, sync_interval=0)
    try:
        people = lfw_people[:3]
        for i, person in enumerate(people):
            enrol(client, person, f"p{i}")
        assert post_photo(client, "/verify", probe(people[0]), person_id="p0").json()["match"]
        before = scrape(client)
        assert value(before, "facegate_swaps_total", result="done") == 0
        assert value(before, "facegate_swaps_total", result="failed") == 0
        assert before["facegate_model_info"][0].labels["version"] == old.version

        r = client.post(f"/admin/models/{new.version}/activate", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        m = scrape(client)
        assert value(m, "facegate_swaps_total", result="done") == 1
        assert value(m, "facegate_swap_running") == 0
        assert value(m, "facegate_swap_people_embedded") == 3
        assert value(m, "facegate_swap_people_total") == 3
        assert value(m, "facegate_swap_last_duration_seconds") > 0
        (model,) = m["facegate_model_info"]
        assert model.labels == {"version": new.version, "name": new.name, "sha256": new.sha256}
        threshold = verify_threshold(new.calibration, 1e-3, None)
        assert value(m, "facegate_verify_threshold", scale="score") == pytest.approx(threshold.score)

        # after the swap the two calibrations stay apart
        assert (
            post_photo(client, "/verify", probe(people[1]), person_id="p1").json()["model_version"]
            == "swap-b"
        )
        m = scrape(client)
        for version in (old.version, new.version):
            assert value(m, "facegate_decisions_total", operation="verify", model_version=version) == 1
            assert value(m, "facegate_score_count", operation="verify", model_version=version) == 1

        r = client.post("/admin/models/broken/activate", params={"wait": "true"})
        assert r.status_code == 200 and r.json()["state"] == "failed", r.text
        m = scrape(client)
        assert value(m, "facegate_swaps_total", result="failed") == 1
        assert value(m, "facegate_swaps_total", result="done") == 1
        assert value(m, "facegate_swap_running") == 0
        assert m["facegate_model_info"][0].labels["version"] == new.version  # still serving
    finally:
        client.__exit__(None, None, None)


# ---- replication ----


@pytest.mark.lfw
def test_replication_position_and_lag(database_url: str, tmp_path: Path, lfw_people) -> None:
    models = private_models(tmp_path)
    a = start_client(database_url, tmp_path, models, sync_interval=0.2)
    b = start_client(database_url, tmp_path, models, sync_interval=0.2)
    try:
        assert value(scrape(b), "facegate_replication_lag_seconds_count") == 0
        enrol(a, lfw_people[0], "alice")
        enrol(a, lfw_people[1], "bob")
        head = a.app.state.facegate.replicator.feed.position()
        assert head >= 2
        deadline = time.monotonic() + 10
        while value(scrape(b), "facegate_replication_position") < head and time.monotonic() < deadline:
            time.sleep(0.05)
        m = scrape(b)
        assert value(m, "facegate_replication_position") == head
        assert value(m, "facegate_replication_lag_seconds_count") >= 2  # one per change applied
        lag = value(m, "facegate_replication_last_lag_seconds")
        assert 0 < lag < 10
        assert 0 < value(m, "facegate_replication_lag_seconds_sum") < 10 * head
        assert value(m, "facegate_gallery_size") == 2
        assert value(m, "facegate_replication_poll_failures_total") == 0
    finally:
        a.__exit__(None, None, None)
        b.__exit__(None, None, None)


# ---- the metrics scope ----


def test_a_metrics_key_reads_metrics_and_nothing_else(client) -> None:
    assert "metrics" in SCOPES
    r = client.post("/keys", json={"name": "prometheus", "scopes": ["metrics"]})
    assert r.status_code == 201, r.text
    scraper = {"Authorization": f"Bearer {r.json()['key']}"}
    assert "facegate_requests_total" in scrape(client, **scraper)
    assert client.get("/me", headers=scraper).json()["scopes"] == ["metrics"]
    assert_problem(client.delete("/people/anyone", headers=scraper), 403, "forbidden")
    assert_problem(client.get("/people", headers=scraper), 403, "forbidden")
    assert_problem(client.get("/model", headers=scraper), 403, "forbidden")
    assert_problem(client.get("/keys", headers=scraper), 403, "forbidden")
    assert_problem(
        client.post("/keys", headers=scraper, json={"name": "x", "scopes": ["admin"]}), 403, "forbidden"
    )
    for route in ("/enroll", "/identify"):
        files = {"image": ("photo.jpg", noise_photo(), "image/jpeg")}
        assert_problem(client.post(route, headers=scraper, files=files, data={"name": "x"}), 403, "forbidden")

    for scopes in (["verify"], ["enroll"]):
        key = client.post("/keys", json={"name": "other", "scopes": scopes}).json()["key"]
        assert_problem(client.get("/metrics", headers={"Authorization": f"Bearer {key}"}), 403, "forbidden")
    assert_problem(client.get("/metrics", headers={"Authorization": ""}), 401, "unauthorized")
    assert client.get("/metrics").status_code == 200  # admin

    assert client.post("/keys", json={"name": "all", "scopes": sorted(SCOPES)}).status_code == 201
    schema = client.get("/openapi.json").json()["components"]["schemas"]["KeyCreate"]["properties"]["scopes"]
    assert schema["maxItems"] == len(SCOPES) == 5  # enroll, verify, compare, metrics, admin
    assert schema["items"]["enum"] == sorted(SCOPES)


# ---- the Grafana dashboard ----


def _queries(dashboard: dict) -> list[str]:
    out = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            out.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard["panels"])
    out.extend(a["expr"] for a in dashboard.get("annotations", {}).get("list", []) if a.get("expr"))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            out.append(variable["definition"])
    return out


METRIC = re.compile(r"\b(?:facegate|process|python)_[a-zA-Z0-9_]+")


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = []
    for panel in dashboard["panels"]:
        ids.append(panel["id"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"][
            "w"
        ] <= 24
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    assert len(ids) == len(set(ids))
    for expr in _queries(dashboard):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr


@pytest.mark.lfw
def test_every_metric_the_dashboard_queries_is_in_a_live_scrape(client, lfw_people) -> None:
    enrol(client, lfw_people[0], "alice")
    post_photo(client, "/verify", probe(lfw_people[0]), person_id="alice")
    post_photo(client, "/identify", probe(lfw_people[0]))
    post_photo(client, "/enroll", noise_photo(), name="x")  # a problem
    m = scrape(client)
    queries = _queries(json.loads(DASHBOARD.read_text()))
    used = {name for q in queries for name in METRIC.findall(q)}
    missing = sorted(used - set(m))
    assert not missing, missing
    # the panels the operator needs are there
    assert {
        "facegate_requests_total",
        "facegate_request_seconds_bucket",
        "facegate_problems_total",
        "facegate_decisions_total",
        "facegate_score_bucket",
        "facegate_gallery_size",
        "facegate_swap_people_embedded",
        "facegate_replication_lag_seconds_bucket",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    } <= used
    # every label a query groups by or matches on exists on one of its metrics
    for q in queries:
        labels = set(TARGET_LABELS) | {"le"}
        for name in METRIC.findall(q):
            labels |= {k for s in m[name] for k in s.labels}
        grouped = {x.strip() for g in re.findall(r"by \(([^)]*)\)", q) for x in g.split(",")}
        matched = set(re.findall(r"(\w+)\s*(?:=~|!=|!~|=)\s*\"", q))
        assert grouped | matched <= labels, (q, (grouped | matched) - labels)
