"""Probe crops accepted at a very high score, kept for the retraining job's self-training (opt-in).

Off by default. With ``FACEGATE_SELFTRAIN_DIR`` set, a ``/verify`` match or an ``/identify`` match
whose score is at least ``FACEGATE_SELFTRAIN_MIN_SCORE`` keeps the probe's aligned crop (the
model's input, not the photo) as a PNG under::

    <dir>/<alignment digest>/<person_id as hex>/<UTC stamp>-<random>.png

The alignment digest (size and template of the model that cut the crop) keeps crops of models
with other templates apart, so the job reads only crops its model can embed. Retention: a crop
older than ``FACEGATE_SELFTRAIN_RETENTION_DAYS`` is deleted when the store is next written or
read; at most ``MAX_PER_PERSON`` newest crops are kept per person; deleting a person removes
theirs. The crops are stored in clear (``FACEGATE_ENCRYPTION_KEYS`` does not cover them): put the
folder on encrypted storage where the gallery is encrypted at rest.

Why only very high scores: a self-training pair must be genuine; a wrong acceptance would teach
the adapter to merge two people. The default (0.999) sits far above /verify's threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from service.model_card import Alignment, ModelCard

log = logging.getLogger(__name__)

MAX_PER_PERSON = 20
PURGE_EVERY_S = 3600.0


def alignment_digest(alignment: Alignment) -> str:
    return hashlib.sha256(json.dumps(alignment.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[
        :16
    ]


def _person_dir(person_id: str) -> str:
    return person_id.encode().hex()


@dataclass(frozen=True)
class Accepted:
    person_id: str
    crop: np.ndarray  # uint8 (H, W, 3), aligned for the card's template
    path: Path


class AcceptedProbes:
    """Writes accepted probe crops; a no-op when ``root`` is None (the default)."""

    def __init__(
        self, root: Path | None, min_score: float, retention_days: float, alignment: Alignment
    ) -> None:
        self.root = None if root is None else Path(root)
        self.min_score = min_score
        self.retention_s = retention_days * 86400.0
        self.folder = None if self.root is None else self.root / alignment_digest(alignment)
        self._purged = 0.0

    @classmethod
    def from_settings(cls, settings, card: ModelCard) -> AcceptedProbes:
        return cls(settings.selftrain_dir, settings.selftrain_min_score, settings.selftrain_retention_days,
                   card.alignment)  # fmt: skip

    def keep(self, person_id: str, crop: np.ndarray, score: float) -> None:
        if self.folder is None or score < self.min_score:
            return
        from PIL import Image

        try:
            folder = self.folder / _person_dir(person_id)
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}.png"
            tmp = folder / f".{name}"
            Image.fromarray(np.ascontiguousarray(crop, np.uint8)).save(tmp, "PNG")
            os.replace(tmp, folder / name)
            for old in sorted(folder.glob("*.png"))[:-MAX_PER_PERSON]:
                old.unlink(missing_ok=True)
            if time.monotonic() - self._purged > PURGE_EVERY_S:
                purge(self.root, self.retention_s)
                self._purged = time.monotonic()
        except OSError as exc:  # keeping a probe never fails a request
            log.warning("could not keep an accepted probe: %s", exc)

    def forget(self, person_id: str) -> None:
        if self.root is None or not self.root.is_dir():
            return
        for digest in self.root.iterdir():
            shutil.rmtree(digest / _person_dir(person_id), ignore_errors=True)


def purge(root: Path | None, retention_s: float, now: float | None = None) -> int:
    """Delete crops older than the retention; returns how many were deleted."""
    if root is None or not root.is_dir():
        return 0
    limit = (time.time() if now is None else now) - retention_s
    gone = 0
    for path in root.glob("*/*/*.png"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
                gone += 1
        except FileNotFoundError:
            continue
    return gone


def read_accepted(root: Path, card: ModelCard, retention_days: float | None = None) -> list[Accepted]:
    """Every kept crop for ``card``'s alignment (after deleting those past the retention)."""
    from PIL import Image

    if retention_days is not None:
        purge(root, retention_days * 86400.0)
    folder = Path(root) / alignment_digest(card.alignment)
    if not folder.is_dir():
        return []
    w, h = card.alignment.size
    out = []
    for person in sorted(folder.iterdir()):
        try:
            person_id = bytes.fromhex(person.name).decode()
        except ValueError:
            continue
        for path in sorted(person.glob("*.png")):
            crop = np.asarray(Image.open(path).convert("RGB"))
            if crop.shape == (h, w, 3):
                out.append(Accepted(person_id, crop, path))
    return out
