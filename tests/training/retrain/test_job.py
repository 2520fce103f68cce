"""The retraining job's ``finetune`` method end to end on a small synthetic gallery: publishes, or refuses
with reasons (the default ``adapter`` method: test_adapter_job.py)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.tables import Person, ReferenceCrop
from service.model_card import load_card
from service.model_registry import write_active
from service.pipeline.embed import Embedder
from training.backbones import arcface_template, build_backbone
from training.cli import app
from training.export.onnx_export import export_onnx, write_model_card
from training.retrain.job import EXIT_PUBLISHED, EXIT_REFUSED, EXIT_UNUSABLE, RetrainOptions, run

REPO = Path(__file__).resolve().parents[3]
SIZE = 32
SPEC = {
    "name": "resnet",
    "embedding_dim": 16,
    "kwargs": {"layers": [1, 1], "widths": [8, 16], "input_size": SIZE},
}
PEOPLE = 40


def _crop(rng: np.random.Generator, proto: np.ndarray) -> np.ndarray:
    img = np.asarray(Image.fromarray(proto).resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def deployment(tmp_path: Path):
    """A models folder with a tiny model (ONNX + card + weights.pt) and a gallery of one crop per person."""
    rng = np.random.default_rng(0)
    protos = [rng.integers(0, 256, (4, 4, 3)).astype(np.uint8) for _ in range(PEOPLE)]
    crops = np.stack([_crop(rng, p) for p in protos])
    models = tmp_path / "models"
    folder = models / "tiny"
    torch.manual_seed(0)
    model = build_backbone(SPEC["name"], embedding_dim=SPEC["embedding_dim"], **SPEC["kwargs"]).eval()
    export_onnx(model, (SIZE, SIZE), folder, crops[:8])
    write_model_card(
        folder,
        name="tiny",
        version="1.0.0",
        alignment={"size": (SIZE, SIZE), "template": arcface_template((SIZE, SIZE))},
        calibration={
            "a": 10.0,
            "b": -6.0,
            "far_table": [{"far": 1e-2, "similarity": 0.8}, {"far": 1e-4, "similarity": 0.9}],
        },
        evaluation={},
        license="test",
        training_data=[],
        provenance="random weights for tests",
        embedding_dim=SPEC["embedding_dim"],
    )
    torch.save({"backbone": SPEC, "model": model.state_dict()}, folder / "weights.pt")
    url = f"sqlite:///{tmp_path / 'gallery.db'}"
    engine = make_engine(url)
    migrate(engine)
    with session_factory(engine)() as s:
        for i, crop in enumerate(crops):
            person = Person(person_id=f"p{i:02d}", name=f"Person {i}")
            s.add(person)
            s.flush()
            data = _png(crop)
            s.add(ReferenceCrop(person_pk=person.id, image_png=data, width=SIZE, height=SIZE, meta={},
                                photo_sha256=hashlib.sha256(data).hexdigest()))  # fmt: skip
        s.commit()
    engine.dispose()
    return models, url, tmp_path


def _options(models: Path, url: str, tmp: Path, **kw) -> RetrainOptions:
    base = dict(models_dir=models, database_url=url, model="tiny", lfw=False, epochs=3, lr=3e-3, device="cpu",
                work_dir=tmp / "work", seed=0, method="finetune")  # fmt: skip
    return RetrainOptions(**{**base, **kw})


def test_publishes_a_fine_tuned_version_that_does_not_regress(deployment) -> None:
    models, url, tmp = deployment
    result = run(_options(models, url, tmp))
    assert result.status == "published" and result.exit_code == EXIT_PUBLISHED, result.reasons
    folder = models / result.version
    card = load_card(folder)  # the ONNX file matches its card
    assert card.parent_version == "1.0.0" and card.version.startswith("1.0.0-ft.")
    assert card.alignment == load_card(models / "tiny").alignment
    fars = [p.far for p in card.calibration.far_table]
    assert fars == sorted(fars, reverse=True)
    # measured on the candidate's own held-out impostor pairs: nothing inherited from the parent
    assert fars[-1] * card.calibration.impostor_pairs >= 10 and fars[-1] > 1e-4
    assert "not tabulated" in card.calibration.data
    report = json.loads((folder / "report.json").read_text())
    assert report["gate"]["passed"] and all(c["ok"] for c in report["gate"]["checks"])
    assert report["data"]["people"] == PEOPLE and report["data"]["held_out"]["people"] == PEOPLE // 5
    assert report["held_out_pairs"]["augmented_view_genuine"] == PEOPLE // 5
    assert len(report["training"]["epochs"]) == 3 and report["weights"]["parity_min_cosine"] > 0.999
    assert (folder / "plots" / "roc_det.png").is_file() and (folder / "weights.pt").is_file()
    emb = Embedder(folder).embed(np.zeros((2, SIZE, SIZE, 3), np.uint8))
    assert emb.shape == (2, 16)
    # the published weights are the served network: the next retraining starts from them
    assert torch.load(folder / "weights.pt", weights_only=False)["backbone"] == SPEC


def test_refuses_a_candidate_that_regresses_and_keeps_the_current_model(deployment) -> None:
    models, url, tmp = deployment
    first = run(_options(models, url, tmp))  # a fine-tuned model, activated as the service would
    assert first.status == "published"
    write_active(models, first.version, "1.0.0")
    before = sorted(p.name for p in models.iterdir())
    # made to regress: trained from random weights (model.init=null) for one short epoch
    result = run(_options(models, url, tmp, epochs=1, lr=1e-5, overrides=("model.init=null",)))
    assert result.status == "refused" and result.exit_code == EXIT_REFUSED
    assert result.reasons and "worse by" in result.reasons[0]
    assert sorted(p.name for p in models.iterdir() if p.name != "retrain-reports") == before
    report = json.loads(result.report.read_text())
    assert (
        report["status"] == "refused" and not report["gate"]["passed"] and report["reasons"] == result.reasons
    )
    assert (result.report.parent / "plots" / "roc_det.png").is_file()


def test_too_small_a_gallery_is_unusable_and_the_cli_says_so(deployment) -> None:
    models, url, tmp = deployment
    args = ["retrain", "--models-dir", str(models), "--database-url", url, "--model", "tiny", "--no-lfw",
            "--min-people", "100", "--work-dir", str(tmp / "work"), "--device", "cpu"]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == EXIT_UNUSABLE, out.output
    assert "at least 100" in out.output


def test_runs_unchanged_under_torchrun_with_two_processes(deployment) -> None:
    models, url, tmp = deployment
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
           "-m", "training.cli", "retrain", "--method", "finetune", "--models-dir", str(models), "--database-url", url, "--model", "tiny",
           "--no-lfw", "--epochs", "2", "--lr", "0.003", "--work-dir", str(tmp / "work"), "--device", "cpu",
           "--tolerance", "1.0"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    published = [p for p in models.iterdir() if p.name.startswith("1.0.0-ft.")]
    assert len(published) == 1
    report = json.loads((published[0] / "report.json").read_text())
    assert report["training"]["world_size"] == 2 and len(report["training"]["epochs"]) == 2
