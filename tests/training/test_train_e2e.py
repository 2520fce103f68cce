"""One epoch on synthetic data, end to end: train -> checkpoint -> resume -> export -> service -> verify."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from service.model_card import load_card
from service.pipeline.embed import Embedder
from tests.training.synthetic_faces import make_cache, tiny_overrides
from training.cli import app
from training.config import load_config
from training.engine.loop import train
from training.engine.metrics_log import COLUMNS

runner = CliRunner()


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_resume_export_and_verify_in_the_service(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    run_dir = tmp_path / "run"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"margin": {"name": "difficulty", "kwargs": {"threshold": 0.5}}}))
    sets = [a for o in tiny_overrides(cache.root, run_dir, epochs=1) for a in ("--set", o)]

    result = runner.invoke(app, ["train", str(config), *sets])
    assert result.exit_code == 0, result.output
    rows = _metrics(run_dir)
    assert [r["epoch"] for r in rows] == ["1"] and list(rows[0]) == list(COLUMNS)
    for col in (
        "loss",
        "active_ratio",
        "easy_share",
        "margin",
        "genuine_dist_mean",
        "impostor_dist_mean",
        "lr",
    ):
        assert np.isfinite(float(rows[0][col])), col
    assert 0.0 <= float(rows[0]["val_accuracy"]) <= 1.0
    assert json.loads((run_dir / "config.json").read_text())["train"]["epochs"] == 1
    first = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert first["epoch"] == 1

    # resume: a second epoch continues from the checkpoint (optimizer, schedule and margin state)
    result = runner.invoke(app, ["train", str(config), *sets, "--set", "train.epochs=2", "--resume"])
    assert result.exit_code == 0, result.output
    assert [r["epoch"] for r in _metrics(run_dir)] == ["1", "2"]
    second = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert second["epoch"] == 2
    assert second["scheduler"]["last_epoch"] == 2 * first["scheduler"]["last_epoch"]
    margin = second["objective"]["_extra_state"]["margin"]
    assert margin["epoch"] == 2  # the scheduler was stepped once per epoch, across the resume

    model_dir = tmp_path / "model"
    result = runner.invoke(app, ["export", str(run_dir), str(model_dir), "--min-tail", "1", "--name", "tiny"])
    assert result.exit_code == 0, result.output
    card = load_card(model_dir)  # verifies the sha256 of model.onnx
    assert card.input.size == (32, 32) and card.embedding_dim == 16
    assert np.allclose(card.alignment.template, np.asarray(cache.template), atol=1e-4)

    embedder = Embedder(model_dir)
    crops = np.array(cache.crops[:10])  # a writable copy of the memmap rows
    emb = embedder.embed(crops)
    assert emb.shape == (10, 16)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    same = float(emb[0] @ emb[1])  # images 0 and 1: the same synthetic identity
    other = float(emb[0] @ emb[9])  # image 9: another identity
    assert -1.0 <= other < same <= 1.0
    score = card.calibration.score(same)  # a verify-style calibrated score
    assert 0.0 <= score <= 1.0

    # the exported graph and the torch backbone of the checkpoint agree
    from training.export.run import backbone_from_checkpoint

    backbone = backbone_from_checkpoint(second)
    with torch.no_grad():
        ref = backbone(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    assert np.allclose((ref * emb).sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("loss", ["ntxent", "circle", "supcon", "contrastive", "cosine_contrastive"])
def test_every_loss_trains_one_step(tmp_path: Path, loss: str) -> None:
    cache = make_cache(tmp_path, n_ids=8, per_id=4)
    overrides = tiny_overrides(cache.root, tmp_path / "run") + [
        f"loss.name={loss}",
        "data.batches_per_epoch=1",
    ]
    result = train(load_config(None, overrides))
    row = result.rows[0]
    assert np.isfinite(row["loss"]) and 0.0 <= row["active_ratio"] <= 1.0
