"""Search at scale (issue 14): exact search against an approximate FAISS index at N identities.

    python bench/scale.py --people 100000 --queries 2000

Fills a throw-away SQLite gallery with N identities through the storage layer (the gallery's
tables, written in batches: not HTTP, and not one ``Gallery.enroll`` transaction each, which
would take longer than the search measurement itself), then loads it with ``Gallery.load``
(start-up from scratch) and measures, one query at a time on one thread:

* exact search (``Gallery.search`` over the service's ``FaceIndex``): p50/p99;
* the approximate index as the service runs it above ``FACEGATE_EXACT_INDEX_MAX``
  (``service.approx_index.SizedIndex``: FAISS ``IndexHNSWFlat``, inner product, candidates
  re-scored exactly; searched through ``Gallery.search``): build time (``Gallery.load``
  included), and ``efSearch`` tuned on half the queries (the smallest of 16 ... 1024 reaching
  recall@1 >= 0.99 against exact search), then p50/p99 and recall@1 on the other half: overall,
  on the real-embedding subset, and on the queries whose true match scores above the 1:N
  threshold for this N (``identify_threshold`` of the model card);
* ``/readyz``'s index check (``ReadinessProbe.index_ready``), the first (uncached) call and p50
  of 200;
* start-up: from scratch (``Gallery.load``: every embedding read from the database) and from an
  index snapshot (``service.snapshot``: saved, then loaded by a fresh gallery, which replays the
  ``--replay`` changes logged after it);
* the process's RSS.

``--startup-only`` skips the search measurements (and the HNSW build) and times start-up alone;
its last line reads ``startup: N=<n> rebuild_s=<a> snapshot_s=<b> replayed=<c> save_s=<d>
snapshot_mb=<e> rss_mb=<f>``.

Identities: the real SFace embeddings of LFW (``var/science/sface-lfw.npz``, written by
``training/science/embeddings.py`` through the service pipeline; every identity with two or
more photos gives an enrolled photo and a query, the others are enrolled only), and synthetic
identities around them (``fit_noise``: a real identity's embedding plus noise shaped like the
real between-identity covariance is a new identity's centre, its photos the centre plus noise
shaped like the within-identity covariance, with a per-identity scale; the scales are fitted so that the synthetic
genuine and impostor cosine distributions match the real ones; means, standard deviations and
Kolmogorov-Smirnov distances printed). ``--real var/science/sface-celeba.npz`` uses the CelebA
SFace embeddings instead.

The last line reads
``scale: N=<n> index=<name> recall@1=<r> p50_ms=<a> p99_ms=<b> exact_p99_ms=<c> build_s=<d>
startup_s=<e> readyz_ms=<f> rss_mb=<g>``: ``index`` is the one the service uses at N with
``--exact-max`` (default: the ``FACEGATE_EXACT_INDEX_MAX`` setting), ``exact`` or the tuned
``hnsw<M>-ef<efSearch>``; its figures are on the test half of the queries (``startup_s``: from the
index snapshot, changes replayed; the lines before give the approximate index's figures whichever
is in use, and the start from scratch).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.approx_index import EF_CONSTRUCTION, HNSW_M, SizedIndex  # noqa: E402
from service.collection_index import DEFAULT  # noqa: E402
from service.consistency import ReadinessProbe  # noqa: E402
from service.decisions import identify_threshold  # noqa: E402
from service.gallery.db import make_engine, migrate, session_factory  # noqa: E402
from service.gallery.synced import SyncedGallery  # noqa: E402
from service.gallery.tables import ChangeLog, Embedding, Person, ReferenceCrop, utcnow  # noqa: E402
from service.index import FaceIndex  # noqa: E402
from service.model_card import load_card  # noqa: E402
from service.replication import ChangeFeed  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.snapshot import IndexSnapshots  # noqa: E402

REAL = ROOT / "var" / "science" / "sface-lfw.npz"
MODEL_VERSION = "bench-scale"
EF_GRID = (16, 32, 64, 128, 256, 512, 1024)
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def noisy(rng: np.random.Generator, base: np.ndarray, scale, shape: np.ndarray) -> np.ndarray:
    """``base`` plus Gaussian noise with covariance ``scale**2 * shape @ shape.T`` (``scale``: a
    number or one per row), renormalised."""
    z = rng.standard_normal(base.shape).astype(np.float32)
    return unit(base + np.reshape(scale, (-1, 1)) * (z @ shape.T))


def new_centres(
    rng: np.random.Generator, bases: np.ndarray, rho: float, mean: np.ndarray, between: np.ndarray
):
    """New identities drawn from real ones: ``mean + rho (base - mean)`` plus between-identity
    noise of scale ``sqrt(1 - rho^2)`` (rho 1: the real identity itself; 0: a fresh draw from a
    Gaussian fitted to the real identities)."""
    z = rng.standard_normal(bases.shape).astype(np.float32)
    return unit(mean + rho * (bases - mean) + np.sqrt(1 - rho**2) * (z @ between.T))


def covariance_shapes(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors of the real between-identity and within-identity covariances."""
    uniq, inv = np.unique(labels, return_inverse=True)
    means = np.zeros((len(uniq), emb.shape[1]))
    np.add.at(means, inv, emb)
    means /= np.bincount(inv)[:, None]
    within = emb - means[inv]
    eye = 1e-6 * np.eye(emb.shape[1])
    between = np.linalg.cholesky(np.cov(means, rowvar=False) + eye).astype(np.float32)
    return between, np.linalg.cholesky(np.cov(within, rowvar=False) + eye).astype(np.float32)


def ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def real_pairs(emb: np.ndarray, labels: np.ndarray, rng: np.random.Generator, n: int = 20000):
    """Genuine (same label) and impostor (different label) cosines of real embeddings."""
    order = np.argsort(labels, kind="stable")
    gen = []
    for lab in np.unique(labels):
        idx = order[np.searchsorted(labels[order], lab) : np.searchsorted(labels[order], lab, side="right")]
        if len(idx) >= 2:
            gen.append(float(emb[idx[0]] @ emb[idx[1]]))
    a, b = rng.integers(0, len(emb), n), rng.integers(0, len(emb), n)
    keep = labels[a] != labels[b]
    return np.array(gen), np.einsum("ij,ij->i", emb[a[keep]], emb[b[keep]])


def fit_noise(emb, labels, rng):
    """Noise scales (s_g, s_id) and shapes fitted so that synthetic cosines match the real ones.

    A new identity's centre is a real identity's embedding plus noise shaped like the real
    between-identity covariance, scaled by ``s_id``: fitted so that the new identity is as far
    from the person it was drawn from as real people are from each other (its cosines with that
    person match the real impostor distribution). Its photos are the centre plus noise shaped
    like the real within-identity covariance, scaled by ``s_g``: fitted to the real genuine
    distribution. Both by the Kolmogorov-Smirnov distance on a grid."""
    between, within = covariance_shapes(emb, labels)
    mean = emb.mean(axis=0).astype(np.float32)
    real_gen, real_imp = real_pairs(emb, labels, rng)
    bases = emb[rng.integers(0, len(emb), 3000)]

    def genuine(s_g: float, tau: float, centres: np.ndarray) -> np.ndarray:
        scale = s_g * np.exp(tau * rng.standard_normal(len(centres)))  # identities vary in spread
        return np.einsum("ij,ij->i", noisy(rng, centres, scale, within), noisy(rng, centres, scale, within))

    s_g, tau = min(
        ((g, t) for g in np.arange(0.2, 3.0, 0.05) for t in (0.0, 0.2, 0.4, 0.6, 0.8)),
        key=lambda gt: ks(genuine(gt[0], gt[1], bases), real_gen),
    )
    rho = min(
        np.arange(0.0, 1.0, 0.05),
        key=lambda r: ks(np.einsum("ij,ij->i", new_centres(rng, bases, r, mean, between), bases), real_imp),
    )
    centres = new_centres(rng, bases, rho, mean, between)
    syn_gen = genuine(s_g, tau, centres)
    a = noisy(rng, centres, s_g, within)
    syn_imp = np.einsum("ij,ij->i", a, noisy(rng, np.roll(centres, 1, axis=0), s_g, within))
    own = np.einsum("ij,ij->i", a, bases)
    report = {
        "s_g": float(s_g),
        "s_g_spread": float(tau),
        "rho": float(rho),
        "real_genuine_mean": float(real_gen.mean()),
        "real_genuine_std": float(real_gen.std()),
        "synthetic_genuine_mean": float(syn_gen.mean()),
        "synthetic_genuine_std": float(syn_gen.std()),
        "ks_genuine": ks(syn_gen, real_gen),
        "real_impostor_mean": float(real_imp.mean()),
        "real_impostor_std": float(real_imp.std()),
        "synthetic_impostor_mean": float(syn_imp.mean()),
        "synthetic_impostor_std": float(syn_imp.std()),
        "ks_impostor": ks(syn_imp, real_imp),
        "synthetic_vs_own_base_mean": float(own.mean()),
        "ks_own_base_vs_real_impostor": ks(own, real_imp),
        "real_genuine_pairs": len(real_gen),
        "real_impostor_pairs": len(real_imp),
    }
    return float(s_g), float(tau), float(rho), mean, between, within, report


def make_identities(n: int, rng: np.random.Generator, real: Path = REAL):
    """(enrolled (n, d), queries (m, d), query targets (m,), real mask of queries (m,), fit)."""
    z = np.load(real)
    found = z["found"]
    emb, labels = unit(z["embeddings"][found]), z["labels"][found]
    s_g, tau, rho, mean, between, within, fit = fit_noise(emb, labels, rng)
    order = np.argsort(labels, kind="stable")
    emb, labels = emb[order], labels[order]
    first = np.r_[True, labels[1:] != labels[:-1]]
    real_enrolled = emb[first]
    second = np.r_[False, (labels[1:] == labels[:-1]) & first[:-1]]  # each identity's second photo
    real_queries, real_targets = emb[second], np.cumsum(first)[second] - 1
    n_real = min(n, len(real_enrolled))
    keep = real_targets < n_real
    real_queries, real_targets = real_queries[keep], real_targets[keep]
    n_syn = n - n_real
    bases = real_enrolled[rng.integers(0, len(real_enrolled), n_syn)]
    centres = new_centres(rng, bases, rho, mean, between)
    spread = s_g * np.exp(tau * rng.standard_normal(n_syn))
    enrolled = np.concatenate([real_enrolled[:n_real], noisy(rng, centres, spread, within)])
    syn_q = rng.choice(n_syn, size=min(n_syn, 20000), replace=False) if n_syn else np.zeros(0, int)
    queries = np.concatenate([real_queries, noisy(rng, centres[syn_q], spread[syn_q], within)])
    targets = np.concatenate([real_targets, n_real + syn_q])
    is_real = np.r_[np.ones(len(real_queries), bool), np.zeros(len(syn_q), bool)]
    fit.update(real_identities=n_real, synthetic_identities=n_syn)
    return enrolled, queries, targets, is_real, fit


def fill(url: str, vectors: np.ndarray, batch: int = 5000, model_version: str = MODEL_VERSION) -> float:
    """People, crops, embeddings (of ``model_version``) and change-log rows, written in batches;
    returns seconds."""
    engine = make_engine(url)
    migrate(engine)
    started = time.perf_counter()
    now = utcnow()
    with engine.begin() as conn:
        for lo in range(0, len(vectors), batch):
            hi = min(lo + batch, len(vectors))
            conn.execute(
                insert(Person),
                [
                    {
                        "id": i + 1,
                        "person_id": f"P{i:07d}",
                        "name": f"Person {i}",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(lo, hi)
                ],
            )
            conn.execute(
                insert(ReferenceCrop),
                [
                    {
                        "person_pk": i + 1,
                        "image_png": TINY_PNG,
                        "width": 1,
                        "height": 1,
                        "meta": {},
                        "photo_sha256": f"{i:064x}",
                        "created_at": now,
                        "kind": "chip",
                    }
                    for i in range(lo, hi)
                ],
            )
            conn.execute(
                insert(Embedding),
                [
                    {
                        "id": i + 1,
                        "person_pk": i + 1,
                        "model_version": model_version,
                        "vector": vectors[i].tobytes(),
                        "created_at": now,
                    }
                    for i in range(lo, hi)
                ],
            )
            conn.execute(
                insert(ChangeLog),
                [{"op": "upsert", "person_id": f"P{i:07d}", "at": now} for i in range(lo, hi)],
            )
    engine.dispose()
    return time.perf_counter() - started


def timed(fn, items) -> tuple[np.ndarray, list]:
    out, ms = [], []
    for x in items:
        t = time.perf_counter()
        out.append(fn(x))
        ms.append((time.perf_counter() - t) * 1000)
    return np.array(ms), out


def pct(ms: np.ndarray, q: float) -> float:
    return float(np.percentile(ms, q)) if len(ms) else float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def startup(url: str, dim: int, n: int, replay: int, folder: Path, rng) -> dict[str, float]:
    """Start-up from scratch and from a snapshot (``replay`` changes logged after it)."""
    engine = make_engine(url)
    sessions = session_factory(engine)
    feed = ChangeFeed(sessions)
    scratch = SyncedGallery(sessions, FaceIndex(dim), MODEL_VERSION)
    t = time.perf_counter()
    scratch.load()
    rebuild_s = time.perf_counter() - t
    store = IndexSnapshots(folder)
    t = time.perf_counter()
    path = store.save(scratch, feed.position(), "bench")
    save_s = time.perf_counter() - t
    del scratch
    if replay:
        picked = rng.choice(n, size=min(replay, n), replace=False)
        with engine.begin() as conn:  # as if these people had been replaced since the snapshot
            conn.execute(
                insert(ChangeLog),
                [{"op": "upsert", "person_id": f"P{i:07d}", "at": utcnow()} for i in picked],
            )
    started = SyncedGallery(sessions, FaceIndex(dim), MODEL_VERSION)
    result = store.start(started, feed, "bench")
    if result.source != "snapshot":
        raise SystemExit(f"the snapshot was not used: {result.reason}")
    out = {
        "rebuild_s": rebuild_s,
        "snapshot_s": result.seconds,
        "replayed": float(result.replayed),
        "save_s": save_s,
        "snapshot_mb": path.stat().st_size / 1e6,
        "rss_mb": rss_mb(),
    }
    engine.dispose()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--hnsw-m", type=int, default=HNSW_M)
    ap.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    ap.add_argument(
        "--exact-max",
        type=int,
        default=Settings().exact_index_max,
        help="FACEGATE_EXACT_INDEX_MAX: which index the service would use at N (the scale line's index)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-recall", type=float, default=0.99)
    ap.add_argument("--build-threads", type=int, default=1, help="OpenMP threads building the HNSW graph")
    ap.add_argument(
        "--real", type=Path, default=REAL, help="real embeddings (.npz of training/science/embeddings.py)"
    )
    ap.add_argument(
        "--ivf",
        type=int,
        default=0,
        help="also measure FAISS IndexIVFFlat with this many lists (nprobe 16 ... 2048, raw FAISS) on the test half",
    )
    ap.add_argument("--replay", type=int, default=1000, help="changes logged after the index snapshot")
    ap.add_argument("--startup-only", action="store_true", help="time start-up only (no search figures)")
    args = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(args.seed)

    enrolled, queries, targets, is_real, fit = make_identities(args.people, rng, args.real)
    print(
        "noise fit: "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fit.items())
    )
    pick = rng.permutation(len(queries))
    real_idx, syn_idx = pick[is_real[pick]], pick[~is_real[pick]]
    n_real_q = min(len(real_idx), args.queries // 2)  # half the queries real where there are enough
    chosen = np.concatenate([real_idx[:n_real_q], syn_idx[: args.queries - n_real_q]])
    chosen = rng.permutation(chosen)
    queries, targets, is_real = queries[chosen], targets[chosen], is_real[chosen]
    card = load_card(Settings().models_dir / "sface", verify_hash=False)
    threshold = identify_threshold(card.calibration, Settings().target_fpir, args.people)
    true_sim = np.einsum("ij,ij->i", queries, enrolled[targets])
    above = true_sim >= threshold.similarity

    if args.startup_only:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'scale.db'}"
            fill_s = fill(url, enrolled)
            dim = enrolled.shape[1]
            del enrolled, queries
            s = startup(url, dim, args.people, args.replay, Path(tmp) / "snapshots", rng)
        print(f"filled {args.people} identities in {fill_s:.1f} s")
        print(
            f"startup: N={args.people} rebuild_s={s['rebuild_s']:.2f} snapshot_s={s['snapshot_s']:.2f} "
            f"replayed={s['replayed']:.0f} save_s={s['save_s']:.2f} snapshot_mb={s['snapshot_mb']:.0f} "
            f"rss_mb={s['rss_mb']:.0f}"
        )
        return

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'scale.db'}"
        fill_s = fill(url, enrolled)
        engine = make_engine(url)
        gallery = SyncedGallery(session_factory(engine), FaceIndex(enrolled.shape[1]), MODEL_VERSION)
        t = time.perf_counter()
        gallery.load()
        startup_s = time.perf_counter() - t
        exact_ms, exact_hits = timed(lambda q: gallery.search(q, 1), queries)
        exact_top = np.array([int(h[0].person_id[1:]) if h else -1 for h in exact_hits])

        # the approximate index as the service runs it: SizedIndex (HNSW + exact re-ranking), forced on
        sized = SizedIndex(
            enrolled.shape[1],
            exact_max=1,
            background=False,
            m=args.hnsw_m,
            ef_construction=args.ef_construction,
        )
        approx_gallery = SyncedGallery(session_factory(engine), sized, MODEL_VERSION)
        faiss.omp_set_num_threads(args.build_threads)
        t = time.perf_counter()
        approx_gallery.load()
        build_s = time.perf_counter() - t  # reading the database and building the graph
        faiss.omp_set_num_threads(1)
        graph = approx_gallery.index.index_of(DEFAULT)
        assert isinstance(graph, SizedIndex) and graph.approximate()

        half = len(queries) // 2
        tune, test = np.arange(half), np.arange(half, len(queries))

        def approx(idx: np.ndarray, ef: int) -> tuple[np.ndarray, np.ndarray]:
            assert isinstance(graph, SizedIndex)
            graph.ef_search = ef
            ms, hits = timed(lambda q: approx_gallery.search(q, 1), queries[idx])
            return ms, np.array([int(h[0].person_id[1:]) if h else -1 for h in hits])

        ef = EF_GRID[-1]
        for candidate in EF_GRID:
            _, top = approx(tune, candidate)
            tuned = float((top == exact_top[tune]).mean())
            high = above[tune]
            tuned_above = float((top[high] == exact_top[tune][high]).mean()) if high.any() else float("nan")
            print(
                f"tuning efSearch {candidate}: recall@1 {tuned:.4f} on {len(tune)} queries "
                f"({tuned_above:.4f} on the {int(high.sum())} whose true match is above the threshold)",
                flush=True,
            )
            if tuned >= args.target_recall:
                ef = candidate
                break
        hnsw_ms, top = approx(test, ef)
        hit = top == exact_top[test]
        recall = float(hit.mean())
        recall_real = float(hit[is_real[test]].mean()) if is_real[test].any() else float("nan")
        recall_above = float(hit[above[test]].mean()) if above[test].any() else float("nan")
        exact_correct = float((exact_top[test] == targets[test]).mean())
        exact_test_ms = exact_ms[test]
        if args.ivf:
            t = time.perf_counter()
            ivf = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(enrolled.shape[1]), enrolled.shape[1], args.ivf, faiss.METRIC_INNER_PRODUCT
            )
            ivf.train(enrolled)
            ivf.add(enrolled)
            print(f"ivf{args.ivf}: trained and filled in {time.perf_counter() - t:.1f} s", flush=True)
            for nprobe in (16, 32, 64, 128, 256, 512, 1024, 2048):
                if nprobe > args.ivf:
                    break
                ivf.nprobe = nprobe
                ms, out = timed(lambda q: int(ivf.search(q[None, :], 1)[1][0, 0]), queries[test])
                print(
                    f"ivf{args.ivf} nprobe {nprobe}: recall@1 {(np.array(out) == exact_top[test]).mean():.4f}, "
                    f"p50 {pct(ms, 50):.3f} ms, p99 {pct(ms, 99):.3f} ms",
                    flush=True,
                )
            del ivf

        probe = ReadinessProbe(ChangeFeed(gallery.session_factory))
        t = time.perf_counter()
        assert probe.index_ready(gallery)
        readyz_first_ms = (time.perf_counter() - t) * 1000
        readyz_ms, _ = timed(lambda _: probe.index_ready(gallery), range(200))
        rss = rss_mb()
        engine.dispose()
        s = startup(url, enrolled.shape[1], args.people, args.replay, Path(tmp) / "snapshots", rng)

    name = f"hnsw{args.hnsw_m}-ef{ef}"
    in_use = name if args.people > args.exact_max > 0 else "exact"
    use_ms, use_recall = (hnsw_ms, recall) if in_use != "exact" else (exact_test_ms, 1.0)
    print(
        f"filled {args.people} identities in {fill_s:.1f} s; {len(queries)} queries "
        f"({int(is_real.sum())} real); 1:N threshold similarity {threshold.similarity:.4f} "
        f"({threshold.basis}); {int(above[test].sum())} of {len(test)} test queries' true match above it"
    )
    print(
        f"exact: p50 {pct(exact_ms, 50):.3f} ms, p99 {pct(exact_ms, 99):.3f} ms; top-1 is the true identity for {exact_correct:.4f}"
    )
    print(
        f"{name} (SizedIndex: HNSW efConstruction {args.ef_construction}, M {args.hnsw_m}, exact re-ranking): "
        f"build {build_s:.2f} s, p50 {pct(hnsw_ms, 50):.3f} ms, p99 {pct(hnsw_ms, 99):.3f} ms, "
        f"recall@1 {recall:.4f} (real {recall_real:.4f}, above threshold {recall_above:.4f})"
    )
    print(
        f"readyz index check: first {readyz_first_ms:.2f} ms, p50 {pct(readyz_ms, 50):.3f} ms, p99 {pct(readyz_ms, 99):.3f} ms"
    )
    print(
        f"start-up: from scratch {startup_s:.2f} s (again in the snapshot run: {s['rebuild_s']:.2f} s), "
        f"from the snapshot {s['snapshot_s']:.2f} s with {s['replayed']:.0f} changes replayed "
        f"(saved in {s['save_s']:.2f} s, {s['snapshot_mb']:.0f} MB)"
    )
    print(
        f"index in use at N={args.people} with FACEGATE_EXACT_INDEX_MAX={args.exact_max}: {in_use}; "
        f"on the test half exact p50 {pct(exact_test_ms, 50):.3f} ms, p99 {pct(exact_test_ms, 99):.3f} ms"
    )
    print(
        f"scale: N={args.people} index={in_use} recall@1={use_recall:.4f} p50_ms={pct(use_ms, 50):.3f} "
        f"p99_ms={pct(use_ms, 99):.3f} exact_p99_ms={pct(exact_test_ms, 99):.3f} build_s={build_s:.2f} "
        f"startup_s={s['snapshot_s']:.2f} readyz_ms={pct(readyz_ms, 50):.3f} rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
