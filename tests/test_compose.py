"""docker-compose.yml: valid with the secrets set, refused without them, profiles as documented."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECRETS = {"POSTGRES_PASSWORD": "test-only-password", "FACEGATE_ADMIN_KEY": "fg_test_only_key"}

pytestmark = pytest.mark.skipif(
    shutil.which("docker-compose") is None, reason="docker-compose is not installed"
)


def compose(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # an empty env file, so that a developer's .env never makes the test pass or fail
    (tmp_path / "empty.env").write_text("")
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and not k.startswith(("FACEGATE_", "COMPOSE_"))
    }
    cmd = [
        "docker-compose",
        "-f",
        str(REPO / "docker-compose.yml"),
        "--env-file",
        str(tmp_path / "empty.env"),
        *args,
    ]
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_config_is_valid_with_the_secrets(tmp_path: Path) -> None:
    result = compose(tmp_path, "config", **SECRETS)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert (
        SECRETS["FACEGATE_ADMIN_KEY"] in text and f"facegate:{SECRETS['POSTGRES_PASSWORD']}@db:5432" in text
    )
    assert "condition: service_healthy" in text and "healthcheck" in text
    services = compose(tmp_path, "config", "--services", **SECRETS).stdout.split()
    assert sorted(services) == ["api", "api-gpu", "db", "retrain"]
    # the retrain and gpu services only run with their profile
    assert text.count("profiles:") == 2 and "- retrain" in text and "- gpu" in text
    volumes = compose(tmp_path, "config", "--volumes", **SECRETS).stdout.split()
    assert sorted(volumes) == ["models", "pgdata"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_fails_without_a_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in SECRETS.items() if k != missing}
    result = compose(tmp_path, "config", **env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_retrain_service_runs_the_retraining_job(tmp_path: Path) -> None:
    text = compose(tmp_path, "--profile", "retrain", "config", **SECRETS).stdout
    assert "facegate-train" in text and "retrain" in text and "/app/models" in text
