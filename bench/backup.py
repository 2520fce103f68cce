"""How long a backup and a restore take, and how large the archive is.

    python bench/backup.py [--people 1000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

Stores ``--people`` people in a SQLite file as the gallery stores them (a 288x288 PNG of a
different LFW photo each, the canvas's size; one 128-d embedding; sealed with a fresh key unless
``--plain``), then times ``service.backup.backup`` of it (model files by reference), a restore
into a fresh PostgreSQL database (created on ``--postgres`` and dropped afterwards; skipped when
it does not answer), a backup of that, and its restore into a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import create_engine, insert, make_url, text  # noqa: E402

from service.backup import backup  # noqa: E402
from service.gallery.cipher import TemplateCipher, new_key  # noqa: E402
from service.gallery.db import make_engine, migrate, normalise_url, session_factory  # noqa: E402
from service.gallery.tables import Embedding, Person, ReferenceCrop  # noqa: E402
from service.restore import restore  # noqa: E402
from training.paths import paths  # noqa: E402


def canvases(count: int) -> list[bytes]:
    photos = sorted((paths().data / "lfw" / "images").glob("*/*.jpg"))[:count]
    out = []
    for p in photos:
        buf = io.BytesIO()
        Image.open(p).convert("RGB").resize((288, 288)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def store(engine, keys: TemplateCipher, crops: list[bytes]) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(crops), 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with session_factory(engine, keys).begin() as s:
        ids = range(1, len(crops) + 1)
        s.execute(insert(Person), [{"id": i, "person_id": f"p{i}", "name": f"Person {i}"} for i in ids])
        s.execute(
            insert(ReferenceCrop),
            [
                {"person_pk": i, "image_png": keys.seal_crop(c, i), "width": 288, "height": 288, "meta": {}}
                | {"photo_sha256": "0" * 64, "kind": "canvas"}
                for i, c in zip(ids, crops)
            ],
        )
        s.execute(
            insert(Embedding),
            [
                {"person_pk": i, "model_version": "v", "vector": keys.seal_vector(v.tobytes(), i, "v")}
                for i, v in zip(ids, vectors)
            ],
        )


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--plain", action="store_true", help="store the templates in clear")
    args = ap.parse_args()

    keys = TemplateCipher() if args.plain else TemplateCipher.from_setting(new_key("k1"))
    crops = canvases(args.people)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = folder / "models"
        source = make_engine(f"sqlite:///{folder / 'source.db'}")
        migrate(source)
        store(source, keys, crops)
        size = (folder / "source.db").stat().st_size + sum(
            f.stat().st_size for f in folder.glob("source.db-*")
        )
        rows.append((f"SQLite gallery of {len(crops)} people", f"{size / 1e6:.1f} MB on disk (file and WAL)"))
        report, took = timed(lambda: backup(source, models, folder / "a.zip", include_model_files=False))
        rows.append(("backup of SQLite", f"{took:.1f} s, archive {report.bytes / 1e6:.1f} MB"))
        server = make_url(normalise_url(args.postgres))
        name = f"fg_bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:  # no server: the PostgreSQL half is skipped
            rows.append(("PostgreSQL", f"skipped ({type(exc).__name__})"))
        else:
            pg = make_engine(server.set(database=name).render_as_string(hide_password=False))
            try:
                _, took = timed(lambda: restore(folder / "a.zip", pg, models, keys))
                rows.append(("restore into an empty PostgreSQL database", f"{took:.1f} s"))
                report, took = timed(lambda: backup(pg, models, folder / "b.zip", include_model_files=False))
                rows.append(("backup of PostgreSQL", f"{took:.1f} s, archive {report.bytes / 1e6:.1f} MB"))
                target = make_engine(f"sqlite:///{folder / 'target.db'}")
                _, took = timed(lambda: restore(folder / "b.zip", target, models, keys))
                rows.append(("restore into an empty SQLite file", f"{took:.1f} s"))
                target.dispose()
            finally:
                pg.dispose()
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        source.dispose()
    width = max(len(k) for k, _ in rows)
    sealed = "in clear" if args.plain else "encrypted"
    print(f"\nFaceGate backup and restore, {len(crops)} people, templates {sealed}\n")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
