"""Memory of the service process at N identities (issue 14): RSS of ``facegate serve`` itself.

    python bench/service_memory.py --people 0 100000 300000 1000000 --real <sface-lfw.npz>

For each N: a throw-away data folder (``FACEGATE_DATA_DIR``, SQLite) is filled with N identities
by ``bench/scale.py``'s ``make_identities`` and ``fill`` (synthetic identities shaped like real
SFace embeddings; the rows carry the default model's version, so the service embeds nothing at
start); the index snapshot is then written as the service would write it (``SizedIndex`` with
``FACEGATE_EXACT_INDEX_MAX``, the HNSW graph built in this process on ``--build-threads`` OpenMP
threads when N is above the limit, saved by ``IndexSnapshots`` for the model's version and
sha256), so the service starts from a snapshot that holds the graph. ``facegate serve`` is started
as a subprocess on that folder and its ``/proc/<pid>/status`` (VmRSS, VmHWM: the peak) is read:

* ``ready``: once ``/readyz`` answers 200 (the snapshot loaded; the log is checked for it and for
  no graph rebuild);
* ``identify``: after ``--requests`` ``POST /identify`` calls with a real LFW photo (detection,
  embedding and the search);
* ``saved``: after the service's own periodic snapshot save (``FACEGATE_INDEX_SNAPSHOT_INTERVAL``
  short here, so it comes at once);
* ``consistency``: after ``GET /admin/consistency`` (the full O(N) comparison).

The split printed beside: the index bytes (the exact ``IndexFlatIP`` and its id map; the HNSW
graph's own copy of the vectors, its links and position maps), the Python maps the gallery and
indexes keep per embedding (``sys.getsizeof`` over the bench's own gallery built the same way:
who each embedding is, each person's embedding, the indexed id sets, the graph's id-to-position
map) and the rest, against the process at N=0. The slope is (RSS at N - RSS at 0) per 10^5.

``--real``: real embeddings in ``training/science/embeddings.py``'s format (``embeddings``,
``labels``, ``found``) or an embedding cache of ``training.evaluation.embedding_cache``
(``keys`` ``<person>/<file>`` and ``embeddings``; labels from the folder). Each N's last line:
``memory: N=<n> index=<kind> ready_rss_mb=<a> rss_mb=<b> hwm_mb=<c> per_1e5_mb=<d> index_mb=<e>
maps_mb=<f> ready_s=<g> build_s=<h>`` (``rss_mb``: after every phase; ``hwm_mb``: the peak over
the process's life; ``per_1e5_mb``: ``rss_mb`` above N=0's, per 10^5 identities; ``ready_s``: from
the start of ``facegate serve`` to ``/readyz`` 200; ``build_s``: this script's ``Gallery.load``,
graph build included).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import REAL, fill, make_identities  # noqa: E402

from service.approx_index import SizedIndex  # noqa: E402
from service.collection_index import DEFAULT  # noqa: E402
from service.gallery.cipher import TemplateCipher  # noqa: E402
from service.gallery.db import make_engine, migrate, session_factory  # noqa: E402
from service.gallery.synced import SyncedGallery  # noqa: E402
from service.memory import release_free_memory  # noqa: E402
from service.model_registry import startup_entry  # noqa: E402
from service.replication import ChangeFeed  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.snapshot import IndexSnapshots  # noqa: E402

PHOTO = ROOT.parent / "shared" / "data" / "lfw" / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
PHASES = ("ready", "identify", "saved", "consistency")


def scale_format(real: Path, folder: Path) -> Path:
    """``real`` as ``make_identities`` reads it (an embedding cache is converted aside)."""
    with np.load(real) as z:
        if "labels" in z.files:
            return real
        keys, emb = z["keys"], z["embeddings"]
    people = np.array([str(k).split("/")[0] for k in keys])
    _, labels = np.unique(people, return_inverse=True)
    out = folder / "real.npz"
    np.savez(out, embeddings=emb, labels=labels.astype(np.int64), found=np.ones(len(emb), bool))
    return out


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def deep_size(*roots: object) -> int:
    """Bytes of these dicts/sets and every key and value in them (tuples and strings followed;
    each object counted once)."""
    seen: set[int] = set()
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (set, frozenset, tuple, list)):
            stack.extend(obj)
    return total


def index_bytes(index: SizedIndex) -> dict[str, int]:
    """The exact index (vectors, id map) and, when built, the HNSW graph (its vectors, links,
    levels and offsets, and the position-to-id array and bitmap) in bytes."""
    exact = faiss.downcast_index(index._index.index)
    out = {
        "exact": int(exact.codes.size()) + 8 * int(index._index.id_map.size()),
        "graph": 0,
    }
    graph = index._graph
    if graph is not None:
        h = graph.hnsw.hnsw
        flat = faiss.downcast_index(graph.hnsw.storage)
        out["graph"] = (
            int(flat.codes.size())
            + 4 * int(h.neighbors.size())
            + 4 * int(h.levels.size())
            + 8 * int(h.offsets.size())
            + graph.ids.nbytes
            + graph.alive.nbytes
        )
    return out


def prepare(data_dir: Path, n: int, real: Path, seed: int, build_threads: int) -> dict[str, Any]:
    """Fill the data folder with ``n`` identities and write the index snapshot the service starts
    from; returns the build figures and the split of what the gallery holds."""
    settings = Settings(data_dir=data_dir)
    entry = startup_entry(settings.models_dir, settings.model)
    dim = entry.card.embedding_dim
    url = settings.database_url
    if n == 0:
        migrate(make_engine(url))
        return {
            "fill_s": 0.0,
            "build_s": 0.0,
            "exact_mb": 0.0,
            "graph_mb": 0.0,
            "maps_mb": 0.0,
            "kind": "empty",
        }
    enrolled = make_identities(n, np.random.default_rng(seed), real)[0]
    if enrolled.shape[1] != dim:
        raise SystemExit(f"--real holds {enrolled.shape[1]}-d embeddings, the default model {dim}-d")
    fill_s = fill(url, enrolled, model_version=entry.version)
    del enrolled
    gc.collect()
    engine = make_engine(url)
    sessions = session_factory(engine)
    index = SizedIndex(dim, exact_max=settings.exact_index_max, background=False)
    gallery = SyncedGallery(sessions, index, entry.version)
    faiss.omp_set_num_threads(build_threads)
    t = time.perf_counter()
    gallery.load()  # reading the database and, above the limit, building the graph
    build_s = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    sized = gallery.index.index_of(DEFAULT)
    assert isinstance(sized, SizedIndex)
    if (n > settings.exact_index_max > 0) != sized.approximate():
        raise SystemExit(f"unexpected index {sized.kind()} at N={n}")
    sizes = index_bytes(sized)
    maps = deep_size(gallery._by_id, gallery._by_person, sized._ids)
    if sized._graph is not None:
        maps += deep_size(sized._graph.where)
    store = IndexSnapshots(settings.index_snapshot_dir or data_dir / "index-snapshots", TemplateCipher())
    store.save(gallery, ChangeFeed(sessions).position(), entry.card.sha256)
    del gallery, index, sized
    engine.dispose()
    gc.collect()
    release_free_memory()
    return {
        "fill_s": fill_s,
        "build_s": build_s,
        "exact_mb": sizes["exact"] / 2**20,
        "graph_mb": sizes["graph"] / 2**20,
        "maps_mb": maps / 2**20,
        "kind": "hnsw" if sizes["graph"] else "exact",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(data_dir: Path, requests: int, photo: Path, ready_timeout: float) -> dict[str, object]:
    """Start ``facegate serve`` on ``data_dir`` and read its memory at each phase."""
    port, key = free_port(), secrets.token_urlsafe(32)
    env = {
        **os.environ,  # noqa: TID251 - the server subprocess inherits the environment
        "FACEGATE_DATA_DIR": str(data_dir),
        "FACEGATE_ADMIN_KEY": key,
        "FACEGATE_INDEX_SNAPSHOT_INTERVAL": "5",  # the first periodic save comes at once
        "FACEGATE_CONSISTENCY_INTERVAL": "0",  # asked for below, once
        "FACEGATE_LOG_LEVEL": "info",
    }
    for name in ("FACEGATE_DATABASE_URL", "FACEGATE_INDEX_SNAPSHOT_DIR"):
        env.pop(name, None)
    log_path = data_dir / "serve.log"
    facegate = Path(sys.executable).with_name("facegate")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(facegate), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    base = f"http://127.0.0.1:{port}"
    out: dict[str, object] = {}
    try:
        started = time.perf_counter()
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"facegate serve exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
                    )
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() - started > ready_timeout:
                    raise SystemExit(
                        f"not ready after {ready_timeout:.0f} s:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.5)
            out["ready_s"] = time.perf_counter() - started
            out["ready"] = proc_status(proc.pid)
            body = photo.read_bytes()
            for _ in range(requests):
                r = client.post("/identify", files={"image": (photo.name, body, "image/jpeg")})
                if r.status_code != 200:
                    raise SystemExit(f"/identify answered {r.status_code}: {r.text[:500]}")
            out["identify"] = proc_status(proc.pid)
            deadline = time.perf_counter() + 600
            while "index snapshot of" not in log_path.read_text():
                if time.perf_counter() > deadline:
                    raise SystemExit("the service saved no snapshot within 600 s")
                time.sleep(0.5)
            time.sleep(1.0)
            out["saved"] = proc_status(proc.pid)
            r = client.get("/admin/consistency")
            if r.status_code != 200:
                raise SystemExit(f"/admin/consistency answered {r.status_code}: {r.text[:500]}")
            out["consistency"] = proc_status(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    out["from_snapshot"] = "loaded from its snapshot" in text
    out["graph_rebuilt"] = bool(re.search(r"HNSW graph of \d+ embeddings built|graph is not used", text))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, nargs="+", default=[0, 100_000, 300_000, 1_000_000])
    ap.add_argument("--real", type=Path, default=REAL, help="real embeddings (see the module docstring)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-threads", type=int, default=2, help="OpenMP threads building the HNSW graph")
    ap.add_argument("--requests", type=int, default=50, help="POST /identify calls after /readyz")
    ap.add_argument("--photo", type=Path, default=PHOTO, help="the photo /identify is sent")
    ap.add_argument("--ready-timeout", type=float, default=1800.0)
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="prepare each N in <keep>/n-<N> and keep it; a folder prepared before is measured again as it is",
    )
    args = ap.parse_args(argv)
    if not args.real.exists():
        raise SystemExit(f"{args.real} is missing (--real: see the module docstring)")
    baseline: dict[str, float] = {}  # the process at N=0: RSS at ready and after every phase
    with tempfile.TemporaryDirectory() as scratch:
        real = scale_format(args.real, Path(scratch))
        for n in sorted(args.people):
            with tempfile.TemporaryDirectory() as tmp:
                data_dir = args.keep / f"n-{n}" if args.keep else Path(tmp)
                done = data_dir / "prepared.json"
                if done.exists():
                    p = json.loads(done.read_text())
                    print(f"N={n}: prepared before in {data_dir} (build {p['build_s']:.1f} s)", flush=True)
                else:
                    data_dir.mkdir(parents=True, exist_ok=True)
                    t = time.perf_counter()
                    p = prepare(data_dir, n, real, args.seed, args.build_threads)
                    done.write_text(json.dumps(p))
                    print(
                        f"N={n}: filled in {p['fill_s']:.1f} s; index built in {p['build_s']:.1f} s "
                        f"on {args.build_threads} threads ({p['kind']}); "
                        f"prepared in {time.perf_counter() - t:.1f} s",
                        flush=True,
                    )
                m = measure(data_dir, args.requests, args.photo, args.ready_timeout)
            if n and (not m["from_snapshot"] or m["graph_rebuilt"]):
                raise SystemExit(f"N={n}: the service did not start from the snapshot as written: {m}")
            phases = {ph: m[ph] for ph in PHASES}
            rss = phases["consistency"]["VmRSS"]  # type: ignore[index]
            hwm = phases["consistency"]["VmHWM"]  # type: ignore[index]
            ready_rss = phases["ready"]["VmRSS"]  # type: ignore[index]
            if n == 0:
                baseline = {"ready": ready_rss, "final": rss}
            print(
                f"N={n}: "
                + "; ".join(
                    f"{ph} RSS {v['VmRSS']:.0f} MB (peak so far {v['VmHWM']:.0f})"  # type: ignore[index]
                    for ph, v in phases.items()
                ),
                flush=True,
            )
            index_mb = p["exact_mb"] + p["graph_mb"]
            per = float("nan")
            if baseline and n:
                per = (rss - baseline["final"]) / (n / 1e5)
                rest = ready_rss - baseline["ready"] - index_mb - p["maps_mb"]
                print(
                    f"N={n}: at ready {ready_rss:.0f} MB = process at N=0 {baseline['ready']:.0f} + exact index "
                    f"{p['exact_mb']:.0f} + HNSW graph {p['graph_mb']:.0f} + Python maps {p['maps_mb']:.0f} "
                    f"+ rest {rest:.0f}; after every phase {rss:.0f} MB, "
                    f"{per:.0f} MB per 10^5 identities above N=0's {baseline['final']:.0f}",
                    flush=True,
                )
            print(
                f"memory: N={n} index={p['kind']} ready_rss_mb={ready_rss:.0f} rss_mb={rss:.0f} "
                f"hwm_mb={hwm:.0f} per_1e5_mb={per:.0f} index_mb={index_mb:.0f} maps_mb={p['maps_mb']:.0f} "
                f"ready_s={m['ready_s']:.1f} build_s={p['build_s']:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
