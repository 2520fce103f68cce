"""Helpers for the model-lifecycle tests: a private models folder, extra versions, apps on one database."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.model_card import ModelCard, load_card, write_card
from service.settings import DEFAULT_MODEL, Settings

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "fg_test_admin_key_0123456789abcdef0123456789"


def private_models(tmp: Path, *names: str) -> Path:
    """``tmp/models`` with the shipped detector and default model, and the shipped model folders
    ``names`` (files linked, not copied), so a test may publish versions and write active.json
    without touching the repository."""
    shipped = Path(os.environ.get("FACEGATE_TEST_SHIPPED_MODELS", REPO / "models"))
    folders = dict.fromkeys((DEFAULT_MODEL, *names))
    missing = [n for n in folders if not (shipped / n / "model.json").is_file()]
    if missing or not (shipped / "mtcnn" / "onet.onnx").is_file():
        pytest.skip(
            f"the shipped models ({', '.join(f'models/{n}' for n in (*folders, 'mtcnn'))}) are missing"
        )
    models = tmp / "models"
    models.mkdir(parents=True)
    (models / "mtcnn").symlink_to(shipped / "mtcnn", target_is_directory=True)
    for name in folders:
        card = load_card(shipped / name)
        (models / name).mkdir()
        (models / name / card.file).symlink_to(shipped / name / card.file)
        shutil.copy(shipped / name / "model.json", models / name / "model.json")
    return models


def add_version(models: Path, version: str, minutes: int = 1, **fields) -> ModelCard:
    """A version sharing the default ONNX file, published ``minutes`` from now, ``fields`` replaced."""
    base = load_card(models / DEFAULT_MODEL)
    folder = models / version
    folder.mkdir()
    (folder / base.file).symlink_to((models / DEFAULT_MODEL / base.file).resolve())
    published = datetime.now(timezone.utc) + timedelta(minutes=minutes)
    data = {
        **base.model_dump(mode="json"),
        "version": version,
        "published_at": published.isoformat(),
        **fields,
    }
    card = ModelCard.model_validate(data)
    write_card(card, folder)
    return card


def start_client(database_url: str, tmp: Path, models: Path, **overrides) -> TestClient:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp / "var",
        admin_key=ADMIN_KEY,
        models_dir=models,
        **overrides,
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    client.__enter__()
    client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return client


def active_version(models: Path) -> str | None:
    path = models / "active.json"
    return json.loads(path.read_text())["version"] if path.is_file() else None
