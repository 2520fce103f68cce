"""The retraining job's data: the gallery's stored crops, extra labelled folders, the held-out split.

* Gallery: every person's aligned reference crop, read from the service's database
  (``reference_crops``), realigned to the current model's template when it was cut for another
  one (``service.crop_embed.realign``). Identity = ``person_id``. One photo per person.
* Extra folders ``<identity>/<photo>``: detected and aligned once through the service pipeline
  with the current model's template (``training.data.prepare``). A folder named like a gallery
  ``person_id`` adds photos of that enrolled person.
* Held-out split: identity-disjoint, a share of the single-photo and of the several-photo
  identities each (so that real genuine pairs, when there are any, are held out too).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select

from service.crop_embed import decode_png, realign
from service.gallery.cipher import TemplateCipher
from service.gallery.db import make_engine, session_factory
from service.gallery.tables import Person, ReferenceCrop
from service.model_card import ModelCard
from service.settings import Settings
from training.data.dataset import FaceCache
from training.data.prepare import MANIFEST_FIELDS, PrepareOptions, build_cache
from training.data.sources import list_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crops:
    crops: np.ndarray  # uint8 [N, H, W, 3]
    identities: np.ndarray  # str [N]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.crops)

    def take(self, rows: np.ndarray) -> Crops:
        return Crops(self.crops[rows], self.identities[rows], [self.sources[i] for i in rows])

    @staticmethod
    def concat(parts: list[Crops], size: tuple[int, int]) -> Crops:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Crops(np.zeros((0, size[1], size[0], 3), np.uint8), np.zeros(0, str), [])
        return Crops(
            np.concatenate([p.crops for p in parts]),
            np.concatenate([p.identities for p in parts]),
            [s for p in parts for s in p.sources],
        )


def gallery_crops(database_url: str, card: ModelCard) -> Crops:
    """Every stored reference crop, aligned for ``card``'s model (opened with the service's
    FACEGATE_ENCRYPTION_KEYS when the gallery is encrypted at rest)."""
    engine = make_engine(database_url)
    keys = TemplateCipher.from_setting(Settings().encryption_keys)
    try:
        with session_factory(engine)() as s:
            rows = s.execute(
                select(Person.person_id, ReferenceCrop.person_pk, ReferenceCrop.image_png, ReferenceCrop.meta)
                .join(ReferenceCrop, ReferenceCrop.person_pk == Person.id)
                .order_by(Person.id)
            ).all()
    finally:
        engine.dispose()
    crops = [
        realign(decode_png(keys.open_crop(r.image_png, r.person_pk)), dict(r.meta or {}), card.alignment)
        for r in rows
    ]
    w, h = card.alignment.size
    stacked = np.stack(crops) if crops else np.zeros((0, h, w, 3), np.uint8)
    log.info("gallery: %d reference crops", len(rows))
    return Crops(
        stacked, np.array([r.person_id for r in rows], dtype=str), [f"gallery:{r.person_id}" for r in rows]
    )


def folder_crops(folder: Path, card: ModelCard, models_dir: Path, work: Path) -> tuple[Crops, dict]:
    """Detect and align a ``<identity>/<photo>`` folder for ``card``'s model; (crops, counts)."""
    w, h = card.alignment.size
    try:
        records = list_images(folder)
    except (FileNotFoundError, ValueError) as exc:  # an empty or absent mount: nothing to add
        log.warning("extra folder %s skipped: %s", folder, exc)
        empty = Crops(np.zeros((0, h, w, 3), np.uint8), np.zeros(0, str), [])
        return empty, {"folder": str(folder), "photos": 0, "aligned": 0, "without_face": 0}
    opts = PrepareOptions(
        size=card.alignment.size,
        template=tuple((float(x), float(y)) for x, y in card.alignment.template),
        models_dir=models_dir,
    )
    build_cache(records, work, opts)
    cache = FaceCache.open(work)
    ok = sorted((int(r["index"]), r["identity"], r["source"]) for r in cache.manifest if r["status"] == "ok")
    failed = [r for r in cache.manifest if r["status"] != "ok"]
    crops = Crops(np.array(cache.crops), np.array([i for _, i, _ in ok], dtype=str), [s for _, _, s in ok])
    counts = {
        "folder": str(folder),
        "photos": len(cache.manifest),
        "aligned": len(ok),
        "without_face": len(failed),
    }
    log.info("extra folder %s: %s", folder, counts)
    return crops, counts


def write_cache(root: Path, data: Crops, card: ModelCard) -> FaceCache:
    """A training cache (crops.npy, manifest.csv, meta.json) of ``data``, aligned as ``card`` says."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "crops.npy", np.ascontiguousarray(data.crops))
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for i, (ident, src) in enumerate(zip(data.identities, data.sources)):
            writer.writerow(
                {
                    "index": i,
                    "identity": ident,
                    "source": src,
                    "status": "ok",
                    "method": "stored",
                    "score": "1.0",
                    "detail": "",
                }  # fmt: skip
            )
    meta = {
        "version": 1,
        "size": list(card.alignment.size),
        "template": [list(p) for p in card.alignment.template],
        "images": len(data),
        "identities": len(set(data.identities.tolist())),
        "source": "facegate retrain: gallery reference crops + extra labelled folders",
    }
    (root / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return FaceCache.open(root)


def held_out_split(identities: np.ndarray, fraction: float, seed: int, minimum: int = 2) -> np.ndarray:
    """A boolean mask of the held-out rows: ``fraction`` of the single-photo identities and of the
    several-photo identities (at least ``minimum`` identities in all), chosen by a seeded generator."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(identities, return_counts=True)
    held: list[str] = []
    for group in (names[counts == 1], names[counts > 1]):
        k = int(round(fraction * len(group)))
        held += rng.permutation(group)[:k].tolist()
    if len(held) < minimum:
        rest = np.setdiff1d(names, held)
        held += rng.permutation(rest)[: minimum - len(held)].tolist()
    return np.isin(identities, held)
