"""``facegate-train retrain`` (method adapter) end to end on a synthetic deployment whose model is an
ONNX file alone (no torch weights): gallery crops in the database, accepted probes kept by
``service.selftrain``; the job publishes one composed ONNX graph, or refuses mislabelled probes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.tables import Person, ReferenceCrop
from service.model_card import Alignment, load_card
from service.pipeline.embed import Embedder
from service.selftrain import MAX_PER_PERSON, AcceptedProbes, purge, read_accepted
from service.settings import Settings
from training.backbones import arcface_template
from training.export.adapter_export import ADAPTER_FILE
from training.export.onnx_export import write_model_card
from training.retrain.adapter import AdapterOptions
from training.retrain.job import EXIT_PUBLISHED, EXIT_REFUSED, EXIT_UNUSABLE, RetrainOptions, run

SIZE = 32
DIM = 64
PEOPLE = 120
PROBES = 3


def _linear_model(folder: Path, seed: int = 0) -> None:
    """An embedding model as a bare ONNX graph: uint8 crop -> float -> a fixed random projection."""
    w = np.random.default_rng(seed).normal(size=(SIZE * SIZE * 3, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["image"], ["u"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["u", "mid"], ["f"]),
        helper.make_node("Reshape", ["f", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", SIZE, SIZE, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", DIM])],
        initializer=[numpy_helper.from_array(np.array([-1, SIZE * SIZE * 3], np.int64), "shape"),
                     numpy_helper.from_array(np.array(127.5, np.float32), "mid"),
                     numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    write_model_card(
        folder,
        name="linear",
        version="1.0.0",
        alignment={"size": (SIZE, SIZE), "template": arcface_template((SIZE, SIZE))},
        calibration={"a": 10.0, "b": -6.0, "far_table": [{"far": 1e-2, "similarity": 0.8}]},
        evaluation={},
        license="test",
        training_data=[],
        provenance="a random projection for tests",
        embedding_dim=DIM,
    )


def _photo(rng: np.random.Generator, proto: np.ndarray) -> np.ndarray:
    """The person's pattern under one 'camera': a strong colour cast and a brightness gradient."""
    face = np.asarray(Image.fromarray(proto).resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
    cast = rng.uniform(-45, 45, 3)
    ramp = np.linspace(-1, 1, SIZE)[None, :, None] * rng.uniform(-30, 30)
    return np.clip(0.6 * face + 50 + cast + ramp + rng.normal(0, 4, face.shape), 0, 255).astype(np.uint8)


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def deployment(tmp_path: Path):
    rng = np.random.default_rng(0)
    protos = [rng.integers(0, 256, (6, 6, 3)).astype(np.uint8) for _ in range(PEOPLE)]
    models = tmp_path / "models"
    _linear_model(models / "linear")
    card = load_card(models / "linear")
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    engine = make_engine(url)
    migrate(engine)
    with session_factory(engine)() as s:
        for i, proto in enumerate(protos):
            person = Person(person_id=f"p{i:03d}", name=f"Person {i}")
            s.add(person)
            s.flush()
            data = _png(_photo(rng, proto))
            s.add(ReferenceCrop(person_pk=person.id, image_png=data, width=SIZE, height=SIZE, meta={},
                                photo_sha256=hashlib.sha256(data).hexdigest()))  # fmt: skip
        s.commit()
    engine.dispose()
    store = AcceptedProbes(tmp_path / "accepted", min_score=0.99, retention_days=30, alignment=card.alignment)
    photos = {f"p{i:03d}": [_photo(rng, proto) for _ in range(PROBES)] for i, proto in enumerate(protos)}
    return models, url, tmp_path, store, photos


def _options(models: Path, url: str, tmp: Path, **kw) -> RetrainOptions:
    base = dict(models_dir=models, database_url=url, model="linear", lfw=False, work_dir=tmp / "work",
                selftrain_dir=tmp / "accepted", adapter=AdapterOptions(epochs=20, hidden=64, p=32))  # fmt: skip
    return RetrainOptions(**{**base, **kw})


def test_an_onnx_only_model_is_adapted_published_as_one_graph_and_recalibrated(deployment) -> None:
    models, url, tmp, store, photos = deployment
    for person_id, crops in photos.items():
        for crop in crops:
            store.keep(person_id, crop, score=0.999)
    result = run(_options(models, url, tmp))
    assert result.status == "published" and result.exit_code == EXIT_PUBLISHED, result.reasons
    folder = models / result.version
    card = load_card(folder)  # the composed ONNX file matches its card
    assert result.version.startswith("1.0.0-ad.") and card.parent_version == "1.0.0"
    assert card.input == load_card(models / "linear").input and card.embedding_dim == DIM
    assert "linear 1.0.0" in card.provenance and "residual adapter" in card.provenance
    assert "accepted high-score probes" in card.provenance
    assert card.calibration.genuine_pairs > 0 and "held-out identities" in card.calibration.data
    # recalibrated by the service's organisation calibration, in its format (as facegate calibrate)
    assert card.org_calibration is not None and card.org_calibration.version == result.version
    assert (
        card.org_calibration.based_on == "1.0.0" and card.org_calibration.target_far == Settings().target_far
    )
    assert (card.org_calibration.a, card.org_calibration.b) == (card.calibration.a, card.calibration.b)
    cal_report = json.loads((folder / "calibration_report.json").read_text())
    assert cal_report["genuine_pairs"] == card.calibration.genuine_pairs and cal_report["thresholds"]
    report = json.loads((folder / "report.json").read_text())
    assert report["published"] and report["decided_by"].startswith(
        "organisation improvement interval above zero"
    )
    assert report["organisation"]["interval_low"] > 0 and report["held_out"]["probe_kind"] == "real photos"
    assert report["data"]["selftrain_crops"] == PEOPLE * PROBES and report["parity_min_cosine"] > 0.9999
    assert (folder / ADAPTER_FILE).is_file()
    domains = [o.domain for o in onnx.load(str(folder / card.file)).opset_import]
    assert sorted(domains) == sorted(set(domains))  # one entry per domain (the quantizer needs it)
    crops = np.stack(photos["p000"])
    adapted, base = Embedder(folder).embed(crops), Embedder(models / "linear").embed(crops)
    assert adapted.shape == (PROBES, DIM) and not np.allclose(adapted, base, atol=1e-3)


def test_mislabelled_probes_are_refused_and_the_model_stays(deployment) -> None:
    models, url, tmp, store, photos = deployment
    ids = sorted(photos)
    for n, person_id in enumerate(ids):  # every probe kept under the next person's id
        for crop in photos[person_id]:
            store.keep(ids[(n + 1) % len(ids)], crop, score=0.999)
    before = sorted(p.name for p in models.iterdir())
    result = run(_options(models, url, tmp))
    assert result.status == "refused" and result.exit_code == EXIT_REFUSED
    assert "not above zero" in result.reasons[0]
    assert sorted(p.name for p in models.iterdir() if p.name != "retrain-reports") == before
    report = json.loads(result.report.read_text())
    assert report["status"] == "refused" and report["decided_by"] == "organisation improvement interval"


def test_unknown_method_and_too_few_people_are_unusable(deployment) -> None:
    models, url, tmp, _, _ = deployment
    assert run(_options(models, url, tmp, method="magic")).exit_code == EXIT_UNUSABLE
    small = run(_options(models, url, tmp, min_people=PEOPLE + 1))
    assert small.exit_code == EXIT_UNUSABLE and f"at least {PEOPLE + 1}" in small.reasons[0]


def test_the_probe_store_is_off_by_default_keeps_only_high_scores_and_forgets(tmp_path: Path) -> None:
    alignment = Alignment(size=(SIZE, SIZE), template=arcface_template((SIZE, SIZE)))
    crop = np.full((SIZE, SIZE, 3), 100, np.uint8)
    AcceptedProbes(None, 0.99, 30, alignment).keep("a", crop, 1.0)  # off: nothing, nowhere
    store = AcceptedProbes(tmp_path, 0.99, 30, alignment)
    store.keep("a", crop, 0.98)
    assert not list(tmp_path.rglob("*.png"))
    for _ in range(MAX_PER_PERSON + 3):
        store.keep("a/ü", crop, 0.995)
    store.keep("b", crop, 1.0)
    card = load_card_stub(alignment)
    kept = read_accepted(tmp_path, card)
    assert [k.person_id for k in kept].count("a/ü") == MAX_PER_PERSON and kept[-1].person_id == "b"
    assert np.array_equal(kept[0].crop, crop)
    store.forget("a/ü")
    assert [k.person_id for k in read_accepted(tmp_path, card)] == ["b"]
    old = time.time() - 31 * 86400
    for path in tmp_path.rglob("*.png"):
        os.utime(path, (old, old))
    assert purge(tmp_path, 30 * 86400) == 1 and read_accepted(tmp_path, card) == []


def load_card_stub(alignment: Alignment):
    class Card:
        pass

    card = Card()
    card.alignment = alignment  # type: ignore[attr-defined]
    return card


def test_the_trigger_runs_on_enrolments_since_the_model_and_on_its_schedule(deployment) -> None:
    from datetime import datetime, timedelta, timezone

    from training.retrain.trigger import Trigger, enrolled_since, loop

    _, url, _, _, _ = deployment
    assert enrolled_since(url, None) == PEOPLE
    assert enrolled_since(url, datetime.now(timezone.utc) + timedelta(hours=1)) == 0
    assert not Trigger().looping and Trigger(after_enrolments=5).looping
    assert Trigger(after_enrolments=5).due(None, 0.0, 4) is None
    assert "5 people enrolled" in (Trigger(after_enrolments=5).due(None, 0.0, 5) or "")
    hourly = Trigger(every_hours=1)
    assert hourly.due(None, 0.0, 0) and hourly.due(0.0, 1800.0, 0) is None and hourly.due(0.0, 3600.0, 0)
    clock = iter(range(0, 10**6, 600))
    counts = iter([0, 2, 3, 3, 0, 1])  # enrolments seen at each check; the job resets the count
    runs: list[int] = []
    sleeps: list[float] = []
    n = loop(Trigger(after_enrolments=3), lambda: runs.append(1) or 0, lambda since: next(counts), lambda: None,
             check_seconds=60, max_runs=1, sleep=sleeps.append, clock=lambda: float(next(clock)))  # fmt: skip
    assert n == 1 and runs == [1] and sleeps == [60, 60]


def test_the_cli_runs_the_adapter_by_default_and_refuses_unknown_sources(deployment) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    models, url, tmp, store, photos = deployment
    for person_id, crops in photos.items():
        for crop in crops:
            store.keep(person_id, crop, score=0.999)
    args = ["retrain", "--models-dir", str(models), "--database-url", url, "--model", "linear", "--no-lfw",
            "--work-dir", str(tmp / "work"), "--selftrain-dir", str(tmp / "accepted"), "--adapter-epochs", "20"]  # fmt: skip
    bad = CliRunner().invoke(app, [*args, "--sources", "views"])
    assert bad.exit_code == 2 and "valid: view, extra, selftrain" in bad.output
    out = CliRunner().invoke(app, args)
    assert out.exit_code == EXIT_PUBLISHED, out.output
    assert json.loads(out.output[out.output.index("{") :])["version"].startswith("1.0.0-ad.")
