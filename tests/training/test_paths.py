"""The data folder is resolved in one place; a missing one is a one-line error naming the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.paths import DataMissing, paths, require

REPO = Path(__file__).resolve().parents[2]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEGATE_DATA", str(tmp_path))
    monkeypatch.setenv("FACEGATE_CACHE", str(tmp_path / "cache"))
    paths.cache_clear()
    assert paths().data == tmp_path and paths().cache == tmp_path / "cache"
    (tmp_path / "lfw").mkdir()
    assert paths().require("lfw") == tmp_path / "lfw"
    with pytest.raises(DataMissing, match="FACEGATE_DATA") as err:
        paths().require("celeba-aligned", "CelebA")
    assert "\n" not in str(err.value) and str(tmp_path / "celeba-aligned") in str(err.value)
    with pytest.raises(DataMissing, match="FACEGATE_CACHE"):
        require(tmp_path / "absent", "FACEGATE_CACHE", "cache")


def test_the_cli_says_which_setting_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "training.cli", "eval", str(REPO / "models" / "dlib")],
        env={"FACEGATE_DATA": str(tmp_path / "nowhere"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: LFW not found at {tmp_path / 'nowhere' / 'lfw'} (set FACEGATE_DATA or pass the folder explicitly)"
    ]
