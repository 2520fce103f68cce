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
- the same with 64 stalled uploads that present a valid key (they wait for the body timeout).
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=paths().data)
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--probes", type=int, default=400)
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
    width = max(len(k) for k, _ in rows)
    print(f"\nFaceGate resources, {os.cpu_count()} CPUs, default model\n")
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
