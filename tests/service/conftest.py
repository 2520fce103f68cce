"""Fixtures for API tests: an app on a fresh database with the shipped models, and LFW photos."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.main import create_app
from service.settings import DEFAULT_MODEL, Settings

ADMIN_KEY = "fg_test_admin_key_0123456789abcdef0123456789"


def models_available() -> bool:
    models = Settings().models_dir
    return (models / DEFAULT_MODEL / "model.json").is_file() and (models / "mtcnn" / "onet.onnx").is_file()


@pytest.fixture
def make_client(database_url: str, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Builds started TestClients on the same fresh database (a second call is a restart)."""
    if not models_available():
        pytest.skip(f"the shipped models (models/{DEFAULT_MODEL}, models/mtcnn) are missing")
    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        settings = Settings(
            database_url=database_url,
            data_dir=tmp_path / "var",
            admin_key=ADMIN_KEY,
            **overrides,
        )
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def jpeg(img: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def lfw_people(lfw_dir: Path) -> list[Path]:
    """LFW people with at least 3 photos, sorted by name (a stable, reproducible choice)."""
    images = lfw_dir / "images"
    people = [p for p in sorted(images.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3]
    return people
