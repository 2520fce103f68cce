"""Resources: nothing is read before the key is checked, slow clients get 408, heavy work is
admitted a bounded number at a time (503 + Retry-After beyond the queue), and large JPEGs are
decoded reduced.

The key check, the timeouts and the HTTP-level behaviour are exercised against a real uvicorn
server (FaceGate's own protocol class) over raw sockets, as a misbehaving client would talk.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from PIL import Image

from service.api.admission import HEAVY_ROUTES, Admission, AdmissionMiddleware
from service.api.intake import BodyLimitMiddleware
from service.api.main import create_app
from service.api.slow_clients import HeaderTimeoutProtocol
from service.pipeline.decode import decode_image, decode_reduced
from service.settings import DEFAULT_MODEL, Settings
from tests.service.conftest import ADMIN_KEY, models_available

needs_models = pytest.mark.skipif(not models_available(), reason="the shipped models are missing")


# --- decoding large JPEGs reduced (PIL draft mode) ------------------------------------------------


def _jpeg(size: tuple[int, int], exif_orientation: int | None = None) -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (size[1] // 50, size[0] // 50, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    exif = Image.Exif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    img.save(buf, "JPEG", quality=85, exif=exif.tobytes())
    return buf.getvalue()


def test_a_large_jpeg_is_decoded_reduced_by_the_largest_allowed_power_of_two() -> None:
    data = _jpeg((4000, 3000))
    out = decode_reduced(data, max_pixels=50_000_000, min_side=1000)
    assert out.scale == 4 and out.rgb.shape == (750, 1000, 3)
    assert (out.width, out.height) == (4000, 3000)  # the original size is still reported
    assert decode_reduced(data, 50_000_000, min_side=1001).scale == 2
    assert decode_reduced(data, 50_000_000, min_side=1000, max_scale=2).scale == 2
    assert decode_reduced(data, 50_000_000, min_side=None).scale == 1
    full = decode_image(data, 50_000_000)
    assert full.shape == (3000, 4000, 3)
    # each reduced pixel is its block's mean (computed from the DCT coefficients, not aliased)
    blocks = full.reshape(750, 4, 1000, 4, 3).mean(axis=(1, 3))
    assert np.abs(blocks - out.rgb.astype(np.float64)).mean() < 3.0


def test_a_reduced_decode_reports_the_size_after_exif_rotation() -> None:
    out = decode_reduced(_jpeg((4000, 3000), exif_orientation=6), 50_000_000, min_side=1000)
    assert out.scale == 4 and out.rgb.shape == (1000, 750, 3)
    assert (out.width, out.height) == (3000, 4000)


def test_png_is_never_reduced() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (3000, 2000), "gray").save(buf, "PNG")
    out = decode_reduced(buf.getvalue(), 50_000_000, min_side=500)
    assert out.scale == 1 and out.rgb.shape == (2000, 3000, 3)


@needs_models
def test_a_large_photo_gives_the_face_and_embedding_of_its_full_size_decode(lfw_people: list[Path]) -> None:
    """A face photo enlarged to 20 Mpx: the reduced decode finds the same face (original pixels)
    and embeds it like the full-size decode does."""
    from service.pipeline.detect import FaceDetector
    from service.pipeline.embed import Embedder
    from service.pipeline.pipeline import FacePipeline, FaceSelection

    settings = Settings()
    detector = FaceDetector(settings.models_dir)
    pipeline = FacePipeline(
        detector, Embedder(settings.models_dir / DEFAULT_MODEL), settings.max_image_pixels
    )
    photo = Image.open(next(lfw_people[0].glob("*.jpg"))).convert("RGB").resize((5000, 5000), Image.BICUBIC)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    assert pipeline.decode(data).scale == 2  # 5000 / 2 still covers the detector's working side
    reduced = pipeline.process(data, FaceSelection.largest)
    png = io.BytesIO()
    photo.save(png, "PNG")
    full = pipeline.process(png.getvalue(), FaceSelection.largest)  # PNG: always full size
    assert (reduced.width, reduced.height) == (full.width, full.height) == (5000, 5000)
    a, b = reduced.faces[0], full.faces[0]
    assert np.abs(np.asarray(a.face.box) - np.asarray(b.face.box)).max() < 0.02 * 5000
    assert float(a.embedding @ b.embedding) > 0.98


# --- admission of the heavy work -------------------------------------------------------------------


async def _call(app, path: str = "/verify") -> tuple[int, dict, bytes]:
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, body


def test_admission_runs_at_most_limit_queues_the_rest_and_refuses_past_the_queue() -> None:
    async def scenario():
        release = asyncio.Event()
        running = 0
        most = 0

        async def app(scope, receive, send):
            nonlocal running, most
            if scope["path"] in HEAVY_ROUTES:
                running += 1
                most = max(most, running)
                await release.wait()
                running -= 1
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        middleware = AdmissionMiddleware(app, limit=2, queue=3)
        tasks = [asyncio.create_task(_call(middleware)) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert running == 2 and middleware.admission.admitted == 5
        status, headers, body = await _call(middleware)  # a sixth: the queue is full
        problem = json.loads(body)
        assert status == 503 and problem["code"] == "busy"
        assert int(headers["retry-after"]) >= 1 and problem["retry_after_s"] == int(headers["retry-after"])
        assert headers["content-type"].startswith("application/problem+json")
        assert (await _call(middleware, "/people"))[0] == 200  # not heavy: never queued
        release.set()
        results = await asyncio.gather(*tasks)
        assert [r[0] for r in results] == [200] * 5 and most == 2
        assert middleware.admission.admitted == 0
        assert (await _call(middleware))[0] == 200  # room again

    asyncio.run(scenario())


def test_retry_after_grows_with_the_queue_and_the_time_per_request() -> None:
    admission = Admission(limit=2, queue=10)
    admission._seconds = 3.0
    for _ in range(8):
        assert admission.try_enter()
    assert admission.retry_after() == 12  # 8 ahead, 2 at a time, 3 s each
    with pytest.raises(ValueError):
        Admission(limit=0, queue=1)


def test_a_stalled_body_is_answered_408_and_its_connection_closed() -> None:
    async def scenario():
        async def app(scope, receive, send):  # pragma: no cover - never reached
            raise AssertionError("the application must not see a stalled body")

        middleware = BodyLimitMiddleware(app, max_bytes=1000, stall_timeout=0.2)
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/verify",
            "headers": [(b"content-type", b"image/jpeg")],
        }
        sent: list[dict] = []
        chunks = [{"type": "http.request", "body": b"x" * 10, "more_body": True}]

        async def receive():
            if chunks:
                return chunks.pop()
            await asyncio.sleep(60)

        async def send(message):
            sent.append(message)

        start = time.perf_counter()
        await middleware(scope, receive, send)
        assert time.perf_counter() - start < 5
        head = sent[0]
        assert head["status"] == 408
        headers = dict(head["headers"])
        assert headers[b"connection"] == b"close"
        assert json.loads(sent[1]["body"])["code"] == "request_timeout"

    asyncio.run(scenario())


# --- over real sockets: key first, header timeout ----------------------------------------------------


class _FastHeaderTimeout(HeaderTimeoutProtocol):
    header_timeout = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    if not models_available():
        pytest.skip("the shipped models are missing")
    tmp = tmp_path_factory.mktemp("resources")
    settings = Settings(data_dir=tmp, admin_key=ADMIN_KEY, body_timeout=0.5)
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, http=_FastHeaderTimeout, log_level="warning"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(30)


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("credentials", ["", "Authorization: Bearer fg_wrong_key_0123456789\r\n"])
def test_an_unauthenticated_upload_is_refused_before_its_body_is_sent(server, credentials: str) -> None:
    """Headers announcing 10 MB, no body sent: the 401 comes at once and the connection closes."""
    with socket.create_connection(server) as sock:
        head = (
            "POST /verify HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"{credentials}Content-Length: 10000000\r\n\r\n"
        )
        sock.sendall(head.encode())
        start = time.perf_counter()
        status, headers, body = _read_response(sock)
        assert time.perf_counter() - start < 5
        assert status == 401 and json.loads(body)["code"] == "unauthorized"
        assert headers["connection"] == "close"
        assert _closed_by_server(sock)


def test_a_stalled_upload_with_a_valid_key_gets_408(server) -> None:
    with socket.create_connection(server) as sock:
        head = (
            "POST /verify HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Length: 100000\r\n\r\n--x\r\n"
        )
        sock.sendall(head.encode())
        status, headers, body = _read_response(sock)
        assert status == 408 and json.loads(body)["code"] == "request_timeout"
        assert _closed_by_server(sock)


def test_half_sent_headers_get_408_and_the_connection_closed(server) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"POST /verify HTTP/1.1\r\nHost: t\r\n")
        start = time.perf_counter()
        status, headers, body = _read_response(sock)
        assert 0.3 < time.perf_counter() - start < 5
        assert status == 408 and json.loads(body)["code"] == "request_timeout"
        assert headers["content-type"] == "application/problem+json"
        assert _closed_by_server(sock)


def test_a_silent_connection_is_dropped_too(server) -> None:
    with socket.create_connection(server) as sock:
        status, _, _ = _read_response(sock)
        assert status == 408
        assert _closed_by_server(sock)


def test_well_behaved_requests_on_a_kept_alive_connection_are_answered(server) -> None:
    with socket.create_connection(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = _read_response(sock)
            assert status == 200, body
            time.sleep(0.3)  # under the header timeout each time, over it in total


# --- freed memory goes back to the OS -----------------------------------------------------------------


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_freed_heap_memory_is_handed_back() -> None:
    from service.memory import release_free_memory

    if not release_free_memory():
        pytest.skip("the C library has no malloc_trim (not glibc)")
    blocks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MiB below the mmap threshold
    keep = blocks[-1]  # the heap's top stays in use: only a trim of the middle can release it
    del blocks
    before = _rss_mib()
    assert release_free_memory()
    assert _rss_mib() < before - 100, "malloc_trim did not return the freed heap"
    del keep
