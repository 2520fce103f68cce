"""Memory and throughput of a running FaceGate under load, misbehaving clients included.

    python bench/resources.py [--data ../shared/data] [--people 1000]

Starts `facegate serve` (SQLite and a local index in a throw-away folder, the default model)
and reads the server process's resident memory from /proc (VmRSS now, VmHWM the peak since it
was last reset through clear_refs). It prints:

- idle RSS once ready;
- RSS after enrolling one LFW photo of each of ``--people`` people (2 clients);
- /verify requests per second with 8 concurrent clients on 250x250 photos, with the default
  admission limit and with it effectively off (FACEGATE_MAX_CONCURRENT_WORK=1000), same run;
- peak RSS while 8 clients each send the largest photo allowed (a 40 Mpx JPEG under the 10 MB
  upload limit, and the same as PNG, which cannot be decoded reduced), and RSS afterwards;
- peak RSS while 64 unauthenticated clients stall mid-upload (headers announcing 10 MB, 1 MB sent),
  whether each was answered 401, and RSS afterwards;
- the same with 64 stalled uploads that present a valid key (they wait for the body timeout);
- the cost of encryption at rest (``encryption_at_rest_cost``): seal + open of one template, the
  start-up load of ``--encryption-people`` people and the start's key check, search and
  enrolment, plain against encrypted, and the rotate command's rate.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from training.paths import paths

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEY = "fg_bench_resources_key_0000000000000000"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``facegate serve`` in a subprocess, with its memory read from /proc."""

    def __init__(self, folder: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            **os.environ,  # noqa: TID251 - the server subprocess inherits the environment
            "FACEGATE_DATA_DIR": str(folder),
            "FACEGATE_ADMIN_KEY": KEY,
            "FACEGATE_LOG_LEVEL": "warning",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port)], env=environ, cwd=REPO
        )
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the server did not become ready")

    def _status(self, field: str) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
        raise KeyError(field)

    def rss(self) -> float:
        return self._status("VmRSS")

    def peak(self) -> float:
        return self._status("VmHWM")

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def settle(self, seconds: float = 3.0) -> float:
        time.sleep(seconds)
        return self.rss()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def enrol_all(url: str, refs: dict[str, bytes]) -> int:
    def one(client: httpx.Client, pid: str, data: bytes) -> bool:
        r = client.post(
            f"{url}/enroll",
            files={"image": ("r.jpg", data)},
            data={"person_id": pid, "name": pid, "face_selection": "largest", "allow_duplicate": "true"},
        )
        return r.status_code == 201

    clients = [httpx.Client(headers={"X-API-Key": KEY}, timeout=120) for _ in range(2)]
    with ThreadPoolExecutor(2) as ex:
        done = list(ex.map(lambda item: one(clients[hash(item[0]) % 2], *item), refs.items()))
    for c in clients:
        c.close()
    return sum(done)


def verify_rate(url: str, jobs: list[tuple[str, bytes]], clients: int) -> tuple[float, dict[int, int]]:
    pool = [httpx.Client(headers={"X-API-Key": KEY}, timeout=120) for _ in range(clients)]
    statuses: dict[int, int] = {}

    def one(i: int, pid: str, data: bytes) -> None:
        r = pool[i % clients].post(f"{url}/verify", files={"image": ("p.jpg", data)}, data={"person_id": pid})
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(lambda a: one(*a), [(i, *job) for i, job in enumerate(jobs)]))
    took = time.perf_counter() - start
    for c in pool:
        c.close()
    return len(jobs) / took, statuses


def largest_photos(face: bytes, limit_bytes: int, max_pixels: int) -> dict[str, bytes]:
    """A face photo enlarged to just under ``max_pixels`` (4:3), as JPEG under the upload limit
    and as PNG (a PNG that large does not fit the limit: the largest PNG under it is used)."""
    width = int((max_pixels * 4 / 3) ** 0.5) // 8 * 8
    height = width * 3 // 4
    img = Image.open(io.BytesIO(face)).convert("RGB").resize((height, height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (width, height), (120, 110, 100))
    canvas.paste(img, ((width - height) // 2, 0))
    out = {}
    for quality in (95, 90, 85, 75, 60):
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=quality)
        if buf.tell() <= limit_bytes - 4096:
            out[f"JPEG {width}x{height} q{quality} ({buf.tell() / MB:.1f} MB)"] = buf.getvalue()
            break
    side = height
    while True:
        buf = io.BytesIO()
        canvas.resize((side * 4 // 3, side)).save(buf, "PNG", compress_level=9)
        if buf.tell() <= limit_bytes - 4096:
            out[f"PNG {side * 4 // 3}x{side} ({buf.tell() / MB:.1f} MB)"] = buf.getvalue()
            break
        side = int(side * 0.85)
    return out


def concurrent_uploads(url: str, pid: str, data: bytes, clients: int, rounds: int = 2) -> dict[int, int]:
    statuses: dict[int, int] = {}

    def one(_: int) -> None:
        with httpx.Client(headers={"X-API-Key": KEY}, timeout=300) as c:
            r = c.post(f"{url}/verify", files={"image": ("big.jpg", data)}, data={"person_id": pid})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(one, range(clients * rounds)))
    return statuses


def stalled_uploads(
    port: int, count: int, key: str | None, sent_bytes: int = MB
) -> tuple[list[socket.socket], list[int]]:
    """``count`` connections that announce a 10 MB upload, send ``sent_bytes`` of it, and stall."""
    socks, answered = [], []
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = (
        "POST /verify HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"{auth}Content-Length: {10 * MB - 1024}\r\n\r\n"
    ).encode()
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(head)
        s.setblocking(False)
        sent = 0
        chunk = b"x" * 65536
        while sent < sent_bytes:
            try:
                sent += s.send(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
        socks.append(s)
    time.sleep(1.0)
    for s in socks:
        s.setblocking(True)
        s.settimeout(0.5)
        try:
            first = s.recv(64)
            answered.append(int(first.split()[1]) if first.startswith(b"HTTP/") else 0)
        except (TimeoutError, OSError):
            answered.append(0)  # no answer yet: still stalled
    return socks, answered


def _stored_people(sessions, cipher, crop: bytes, vectors) -> None:
    """``len(vectors)`` people with a canvas crop and an embedding, sealed as the gallery seals."""
    from sqlalchemy import insert

    from service.gallery.tables import Embedding, Person, ReferenceCrop

    ids = range(1, len(vectors) + 1)
    with sessions.begin() as s:
        s.execute(insert(Person), [{"id": i, "person_id": f"p{i}", "name": "P"} for i in ids])
        crops = [cipher.seal_crop(crop, i) for i in ids]
        s.execute(
            insert(ReferenceCrop),
            [
                {"person_pk": i, "image_png": c, "width": 288, "height": 288, "meta": {}}
                | {"photo_sha256": "0" * 64, "kind": "canvas"}
                for i, c in zip(ids, crops)
            ],
        )
        sealed = [cipher.seal_vector(v.tobytes(), i, "v") for i, v in zip(ids, vectors)]
        s.execute(
            insert(Embedding),
            [{"person_pk": i, "model_version": "v", "vector": v} for i, v in zip(ids, sealed)],
        )


def _interleaved(fns: dict[str, Callable[[int], object]], repeat: int) -> dict[str, float]:
    """Median seconds of each function, called in alternation (ABBA order) so that the machine's
    drift hits every one alike."""
    import statistics

    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeat):
        for k in list(fns)[:: 1 if i % 2 == 0 else -1]:
            t = time.perf_counter()
            fns[k](i)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def encryption_at_rest_cost(photo: bytes, people: int, enrolments: int = 200) -> list[tuple[str, str]]:
    """What sealing templates at rest (FACEGATE_ENCRYPTION_KEYS) costs, plain vs encrypted, on
    SQLite in a throw-away folder, through the gallery the service uses, the two measured in
    alternation:

    - seal + open of one reference crop (a 288x288 PNG of an LFW photo, the canvas's size) and one
      embedding of the default model's dimension, alone (median of 2,000);
    - start-up: ``Gallery.load`` of ``people`` stored people, median of 10, the opening of their
      sealed embeddings alone (median of 5), and the key check the start runs (median of 3);
    - ``Gallery.search`` top-5 among them, median of 400 (the index is in memory and in clear
      either way);
    - ``Gallery.enroll`` (crop, embedding, change log, one commit), median of ``enrolments``;
    - ``facegate encryption rotate`` of the plain database (its ``people + enrolments`` people).
    """
    import numpy as np

    from service.gallery import encryption
    from service.gallery.cipher import TemplateCipher, new_key
    from service.gallery.db import make_engine, migrate, session_factory
    from service.gallery.gallery import Gallery
    from service.index import FaceIndex
    from service.model_card import load_card
    from service.settings import DEFAULT_MODEL, Settings

    dim = load_card(Settings().models_dir / DEFAULT_MODEL).embedding_dim
    buf = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").resize((288, 288)).save(buf, "PNG")
    crop = buf.getvalue()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((people + enrolments, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stored, extra = vectors[:people], vectors[people:]
    probes = stored[rng.integers(0, people, 400)]
    keys = TemplateCipher.from_setting(new_key("k1"))

    def seal_and_open(i: int) -> None:
        keys.open_crop(keys.seal_crop(crop, i), i)
        keys.open_vector(keys.seal_vector(vectors[0].tobytes(), i, "v"), i, "v")

    sealed_vectors = [keys.seal_vector(v.tobytes(), i, "v") for i, v in enumerate(stored)]

    def open_all(_: int) -> None:
        for i, blob in enumerate(sealed_vectors):
            keys.open_vector(blob, i, "v")

    crypto = _interleaved({"crypto": seal_and_open}, 2000)["crypto"]
    label = f"encryption at rest: seal + open one crop ({len(crop) / 1024:.0f} KiB) and one {dim}-d embedding"
    rows = [(label, f"{crypto * 1e6:.0f} us")]
    opening = _interleaved({"open": open_all}, 5)["open"]
    what = f"  open the {people} stored embeddings alone (start-up's added work)"
    rows.append((what, f"{opening * 1e3:.1f} ms"))
    with tempfile.TemporaryDirectory() as tmp:
        engines, galleries, sessions = {}, {}, {}
        for name, c in (("plain", TemplateCipher()), ("encrypted", keys)):
            engines[name] = make_engine(f"sqlite:///{tmp}/{name}.db")
            migrate(engines[name])
            sessions[name] = session_factory(engines[name], c)
            _stored_people(sessions[name], c, crop, stored)
            galleries[name] = Gallery(sessions[name], FaceIndex(dim), "v")
        check = _interleaved({"check": lambda _: encryption.check_keys(sessions["encrypted"])}, 3)["check"]
        rows.append((f"  start-up key check of {people} people (FaceGate's start)", f"{check * 1e3:.0f} ms"))
        size, sha = (288, 288), "0" * 64
        costs = {
            "load": _interleaved({k: lambda _, g=g: g.load() for k, g in galleries.items()}, 10),
            "search": _interleaved(
                {k: lambda i, g=g: g.search(probes[i], 5) for k, g in galleries.items()}, 400
            ),
            "enrol": _interleaved(
                {
                    k: lambda i, g=g: g.enroll(f"e{i}", "E", crop, {}, sha, extra[i], crop_size=size)
                    for k, g in galleries.items()
                },
                enrolments,
            ),
        }
        report = encryption.rotate(session_factory(engines["plain"], keys), batch=200, pause=0)
        for e in engines.values():
            e.dispose()
    for key, what, unit, scale in (
        ("load", f"start-up: Gallery.load of {people} people", "ms", 1e3),
        ("search", "Gallery.search top-5, median of 400", "us", 1e6),
        ("enrol", f"Gallery.enroll, median of {enrolments}", "ms", 1e3),
    ):
        a, b = costs[key]["plain"] * scale, costs[key]["encrypted"] * scale
        rows.append((f"  {what}: plain / encrypted", f"{a:.2f} / {b:.2f} {unit} ({b - a:+.2f})"))
    n = people + enrolments
    rate = f"{report.seconds:.1f} s, {n / report.seconds:.0f} people/s"
    rows.append((f"  facegate encryption rotate, {n} people from clear, batches of 200", rate))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=paths().data)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=400)
    ap.add_argument("--encryption-people", type=int, default=10_000, help="people loaded at start-up")
    args = ap.parse_args()

    images = args.data / "lfw" / "images"
    people = sorted(p for p in images.iterdir() if p.is_dir())
    refs = {f"p{i}": sorted(p.glob("*.jpg"))[0].read_bytes() for i, p in enumerate(people[: args.people])}
    multi = [p for p in people if len(list(p.glob("*.jpg"))) >= 4][:20]
    probe_refs = {f"q{i}": sorted(p.glob("*.jpg"))[0].read_bytes() for i, p in enumerate(multi)}
    probes = [(f"q{i}", f.read_bytes()) for i, p in enumerate(multi) for f in sorted(p.glob("*.jpg"))[1:]]
    probes = (probes * (1 + args.probes // len(probes)))[: args.probes]

    from service.settings import Settings

    defaults = Settings()
    biggest = largest_photos(probe_refs["q0"], defaults.max_upload_bytes, defaults.max_image_pixels)

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "a")
        try:
            rows.append(("idle RSS after start", f"{server.settle():.0f} MiB"))
            t = time.perf_counter()
            ok = enrol_all(server.url, {**refs, **probe_refs})
            rows.append(
                (f"RSS after {ok} enrolments ({time.perf_counter() - t:.0f} s)", f"{server.settle():.0f} MiB")
            )
            verify_rate(server.url, probes[:16], 2)  # warm-up
            rate, statuses = verify_rate(server.url, probes, 8)
            rows.append(("/verify req/s, 8 clients, 250x250, default admission", f"{rate:.1f} {statuses}"))
            base = server.settle()
            for label, data in biggest.items():
                server.reset_peak()
                statuses = concurrent_uploads(server.url, "q0", data, 8)
                peak = server.peak()
                after = server.settle(5)
                rows.append((f"peak RSS, 8 concurrent {label}", f"{peak:.0f} MiB {statuses}"))
                rows.append((f"  RSS afterwards (before: {base:.0f} MiB)", f"{after:.0f} MiB"))
            for key, label in ((None, "unauthenticated"), (KEY, "authenticated")):
                before = server.settle(1)
                server.reset_peak()
                socks, answered = stalled_uploads(server.port, 64, key)
                peak = server.peak()
                codes = {c: answered.count(c) for c in sorted(set(answered))}
                for s in socks:
                    s.close()
                after = server.settle(12 if key else 3)
                rows.append((f"peak RSS, 64 {label} stalled uploads (answers {codes})", f"{peak:.0f} MiB"))
                rows.append((f"  RSS afterwards (before: {before:.0f} MiB)", f"{after:.0f} MiB"))
        finally:
            server.stop()
        server = Server(Path(tmp) / "b", FACEGATE_MAX_CONCURRENT_WORK="1000", FACEGATE_MAX_QUEUED_WORK="1000")
        try:
            enrol_all(server.url, probe_refs)
            verify_rate(server.url, probes[:16], 2)
            rate_off, statuses = verify_rate(server.url, probes, 8)
            rows.append(("/verify req/s, 8 clients, 250x250, admission off", f"{rate_off:.1f} {statuses}"))
        finally:
            server.stop()
    rows.append(("  default / off", f"{rate / rate_off:.2f}"))
    rows.extend(encryption_at_rest_cost(refs["p0"], args.encryption_people))
    width = max(len(k) for k, _ in rows)
    print(f"\nFaceGate resources, {os.cpu_count()} CPUs, default model\n")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
