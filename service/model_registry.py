"""The models folder as a registry of versions.

Every sub-folder of ``models_dir`` holding a ``model.json`` (``mtcnn/`` and dot-folders aside) is
one published model; its card's ``version`` names it. A new version is written into a hidden
staging folder and renamed into place, so a scanner never sees half a model. ``active.json``
records the version last activated, so that a restarted service (and, with model watching on,
every replica sharing the folder) comes back on it.

The publishers (the retraining job and ``/admin/calibrate``) fill two card fields that shipped
cards leave out: ``published_at`` ("newer" means a later one, cards without it are the oldest)
and ``parent_version``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from service.errors import ModelError
from service.model_card import ModelCard, load_card, write_card

log = logging.getLogger(__name__)

ACTIVE_FILE = "active.json"
NOT_MODELS = frozenset({"mtcnn"})
_SUFFIX = re.compile(r"-(cal|ft)\.\d{8}T\d{6}Z$")


@dataclass(frozen=True)
class ModelEntry:
    version: str
    folder: Path
    card: ModelCard
    published_at: datetime | None
    parent_version: str | None

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "name": self.card.name,
            "folder": self.folder.name,
            "sha256": self.card.sha256,
            "published_at": self.published_at.isoformat() if self.published_at else None,
            "parent_version": self.parent_version,
            "input_size": list(self.card.input.size),
            "embedding_dim": self.card.embedding_dim,
        }


def read_entry(folder: Path, verify_hash: bool = False) -> ModelEntry:
    card = load_card(folder, verify_hash=verify_hash)
    return ModelEntry(card.version, folder, card, card.published_at, card.parent_version or None)


def scan(models_dir: Path) -> dict[str, ModelEntry]:
    """Every usable model folder by version (hashes are checked when a model is loaded, not here)."""
    out: dict[str, ModelEntry] = {}
    if not models_dir.is_dir():
        return out
    for folder in sorted(models_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or folder.name in NOT_MODELS:
            continue
        if not (folder / "model.json").is_file():
            continue
        try:
            entry = read_entry(folder)
        except ModelError as exc:
            log.warning("skipping model folder %s: %s", folder, exc.detail)
            continue
        if entry.version in out:
            log.warning(
                "model version %s is in both %s and %s; using the first",
                entry.version,
                out[entry.version].folder,
                folder,
            )
            continue
        out[entry.version] = entry
    return out


def newer(a: ModelEntry, b: ModelEntry | None) -> bool:
    """Whether ``a`` was published after ``b`` (an undated card is older than any dated one)."""
    if b is None:
        return True
    if a.published_at is None:
        return False
    return b.published_at is None or a.published_at > b.published_at


def utc_stamp(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")


def new_version(parent: str, tag: str, now: datetime | None = None) -> str:
    """``<parent base>-<tag>.<UTC stamp>``, e.g. ``1.0.0-cal.20250301T101500Z``."""
    base = parent
    while _SUFFIX.search(base):
        base = _SUFFIX.sub("", base)
    return f"{base}-{tag}.{utc_stamp(now)}"


def folder_name(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version)


def publish(models_dir: Path, version: str, write: Callable[[Path], None]) -> Path:
    """Run ``write(staging_folder)`` then rename the folder to ``models_dir/<version>`` atomically."""
    target = models_dir / folder_name(version)
    if target.exists():
        raise ValueError(f"model folder {target} already exists")
    staging = models_dir / f".staging-{folder_name(version)}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        write(staging)
        read_entry(staging, verify_hash=True)  # the card must read back and match its ONNX file
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("published model %s in %s", version, target)
    return target


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link a model file (versions sharing one ONNX cost no space), copying across devices."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def derived_card(parent: ModelCard, version: str, **fields: object) -> ModelCard:
    """A copy of ``parent`` under a new version, published now, with ``fields`` replaced."""
    data = {
        **parent.model_dump(mode="json"),
        "version": version,
        "published_at": datetime.now(timezone.utc).isoformat(),
        "parent_version": parent.version,
        **fields,
    }
    return ModelCard.model_validate(data)


def publish_card_version(models_dir: Path, parent: ModelEntry, card: ModelCard, files: dict) -> Path:
    """A new version sharing ``parent``'s ONNX file (hard-linked), with ``card`` and extra JSON files."""

    def write(folder: Path) -> None:
        link_or_copy(parent.folder / parent.card.file, folder / card.file)
        write_card(card, folder)
        for name, content in files.items():
            (folder / name).write_text(json.dumps(content, indent=2, default=str) + "\n")

    return publish(models_dir, card.version, write)


def read_active(models_dir: Path) -> str | None:
    path = models_dir / ACTIVE_FILE
    try:
        return str(json.loads(path.read_text())["version"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def active_mtime(models_dir: Path) -> float | None:
    try:
        return (models_dir / ACTIVE_FILE).stat().st_mtime
    except OSError:
        return None


def write_active(models_dir: Path, version: str, previous: str | None) -> None:
    """Record the active version (atomically); a read-only models folder is only warned about."""
    body = {"version": version, "previous": previous, "activated_at": datetime.now(timezone.utc).isoformat()}
    tmp = models_dir / f".{ACTIVE_FILE}.{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(tmp, models_dir / ACTIVE_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not record the active model in %s: %s", models_dir, exc)


def startup_entry(models_dir: Path, default_folder: str) -> ModelEntry:
    """The version to start on: the one recorded in ``active.json`` when present, else ``default_folder``."""
    active = read_active(models_dir)
    if active is not None:
        entry = scan(models_dir).get(active)
        if entry is not None:
            return entry
        log.warning("active model %s (from %s) is not in %s", active, ACTIVE_FILE, models_dir)
    return read_entry(models_dir / default_folder)
