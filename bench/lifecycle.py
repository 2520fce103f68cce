"""Model lifecycle figures: how fast a new version re-embeds the gallery, how fast a replica follows.

    python bench/lifecycle.py [--people 500] [--database-url URL of an EMPTY, throw-away database]

* re-embedding: a gallery of N people (random 150x150 crops, stored as PNG) adopted by a new
  version of the model in FACEGATE_MODELS_DIR / FACEGATE_MODEL (``SyncedGallery.backfill`` with
  the model's ``CropEmbedder``): crops per second;
* replication lag: two galleries on one database, one enrolling, the other following the change
  log with a ``Replicator`` polling every 0.5 s: time from the commit to the person being
  searchable on the follower (median and maximum over 20 enrolments).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from service.crop_embed import CropEmbedder, alignment_meta
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.synced import SyncedGallery
from service.index import FaceIndex
from service.model_registry import startup_entry
from service.pipeline.embed import Embedder
from service.replication import ChangeFeed, Replicator
from service.settings import Settings


def _png(rng: np.random.Generator, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _enrol(g: SyncedGallery, rng: np.random.Generator, pid: str, size: tuple[int, int], dim: int) -> None:
    png = _png(rng, size)
    v = rng.standard_normal(dim).astype(np.float32)
    g.enroll(person_id=pid, name=pid, crop_png=png, face_meta={}, photo_sha256=hashlib.sha256(png).hexdigest(),
             embedding=v / np.linalg.norm(v))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--people", type=int, default=500)
    p.add_argument("--database-url", default=None)
    args = p.parse_args()
    settings = Settings()
    url = args.database_url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    entry = startup_entry(settings.models_dir, settings.model)
    embedder = Embedder(entry.folder)
    card = embedder.card
    size, dim = tuple(card.alignment.size), card.embedding_dim
    rng = np.random.default_rng(0)

    old = SyncedGallery(sessions, FaceIndex(dim), "bench-old", alignment=alignment_meta(card.alignment))
    for i in range(args.people):
        _enrol(old, rng, f"p{i}", size, dim)
    new = SyncedGallery(sessions, FaceIndex(dim), "bench-new", reembed=CropEmbedder(embedder))
    start = time.perf_counter()
    stored = new.backfill()
    took = time.perf_counter() - start
    print(f"re-embedding {stored} stored crops with {card.name} {card.version} ({size[0]}x{size[1]}): "
          f"{took:.1f} s, {stored / took:.0f} crops/s")  # fmt: skip

    follower = SyncedGallery(sessions, FaceIndex(dim), "bench-old")
    follower.load()
    feed = ChangeFeed(sessions)
    replicator = Replicator(feed, follower.refresh, interval=0.5, position=feed.position())
    replicator.start()
    lags = []
    for i in range(20):
        pid = f"lag{i}"
        _enrol(old, rng, pid, size, dim)
        committed = time.perf_counter()
        while pid not in follower._by_person:
            time.sleep(0.005)
        lags.append(time.perf_counter() - committed)
        threading.Event().wait(rng.uniform(0, 0.5))
    replicator.stop()
    print(f"replication lag over 20 enrolments ({engine.dialect.name}, poll 0.5 s): "
          f"median {np.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")  # fmt: skip
    engine.dispose()


if __name__ == "__main__":
    main()
