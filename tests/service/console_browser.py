"""Browser-test plumbing for the web console: the real app under uvicorn and headless chromium.

A console test module uses it as a plugin (``pytest_plugins = ["tests.service.console_browser"]``)
for its fixtures: ``browser`` (one chromium per module) and ``page`` (a 1280x900 page of
``server``, closed after the test, which fails on any uncaught script error; a module whose tests
start signed in overrides it: ``def page(page): sign_in(page) ...``). The module names its own
``server``: ``server = console_server("name", **settings)``, the app under uvicorn on a fresh
SQLite gallery.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from service.api.main import create_app
from service.api.routes.console import mount_console
from service.settings import Settings
from tests.service.conftest import ADMIN_KEY

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts" / "console"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # a synthetic camera for the webcam test; no permission prompt
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


# What /enroll answers for a small, blurred face (the console must list every reason in words).
LOW_QUALITY_PROBLEM = {
    "type": "https://facegate.dev/problems/low_quality",
    "title": "Face quality too low",
    "status": 422,
    "code": "low_quality",
    "detail": "the face is too small: 38 px between the eyes, 60 needed; "
    "the face is too blurred: sharpness 4.2, 15.0 needed",
    "reasons": [
        {
            "reason": "face_too_small",
            "message": "the face is too small: 38 px between the eyes, 60 needed",
            "value": 38.0,
            "limit": 60.0,
        },
        {
            "reason": "too_blurred",
            "message": "the face is too blurred: sharpness 4.2, 15.0 needed",
            "value": 4.2,
            "limit": 15.0,
        },
    ],
    "quality": {"eye_distance": 38.0, "sharpness": 4.2, "yaw": 0.1, "detection_score": 0.99},
    "face": {
        "box": [100, 60, 200, 180],
        "score": 0.99,
        "landmarks": [[130, 100], [170, 100], [150, 125], [135, 150], [165, 150]],
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_server(settings: Settings, timeout_s: float = 180.0) -> Iterator[str]:
    """Serves the app (with the console, mounted here if main.py does not yet) on a free port."""
    needed = [
        settings.models_dir / settings.model / "model.json",
        settings.models_dir / "mtcnn" / "onet.onnx",
    ]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"the shipped models are missing: {', '.join(missing)}")
    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/" for r in app.routes):
        mount_console(app)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail("the FaceGate app did not start under uvicorn (see the log above)")
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def launch_browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# ---- fixtures (this module is the console tests' plugin) ----


def console_server(name: str, **overrides: Any) -> Any:
    """A module-scoped ``server`` fixture: the app on a fresh SQLite gallery, with ``overrides``
    of the settings; it yields the base URL."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory) -> Iterator[str]:
        tmp = tmp_path_factory.mktemp(name)
        settings = Settings(
            database_url=f"sqlite:///{tmp / 'gallery.db'}",
            data_dir=tmp / "var",
            admin_key=ADMIN_KEY,
            **overrides,
        )
        yield from run_server(settings)

    return server


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch_browser()


@pytest.fixture
def page(browser, server):
    context, page, errors = new_page(browser, server, 1280, 900)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def face_free_image(seed: int = 0) -> bytes:
    """Smooth colour gradients with a little noise: an image with nothing like a face in it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    rgb = np.stack([x / 320 * 255, y / 240 * 255, np.full_like(x, 140)], axis=-1)
    rgb += rng.normal(0, 6, rgb.shape)
    return png(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)))


def exif_rotated_jpeg() -> bytes:
    """200x100 stored, left half red and right half blue, EXIF orientation 6 (shown 100x200, red on top)."""
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[:, :100] = (255, 0, 0)
    rgb[:, 100:] = (0, 0, 255)
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def side_by_side(a: Path, b: Path, out: Path) -> Path:
    """Two photos next to each other (a photo with at least two faces)."""
    left, right = Image.open(a).convert("RGB"), Image.open(b).convert("RGB")
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), (128, 128, 128))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    canvas.save(out, "JPEG", quality=92)
    return out


# ---- driving the console ----


def new_page(browser, server: str, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=server)
    context.grant_permissions(["camera"], origin=server)
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return context, page, errors


def sign_in(page, key: str = ADMIN_KEY) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def open_tab(page, name: str) -> None:
    page.locator("#nav").get_by_role("link", name=name, exact=True).click()
    page.locator('#nav a[aria-current="page"]', has_text=name).wait_for()


def choose_photo(page, photo: Path | bytes, name: str = "photo.png", mime: str = "image/png") -> None:
    target = page.locator("#view input[type=file]")
    if isinstance(photo, Path):
        target.set_input_files(str(photo))
    else:
        target.set_input_files({"name": name, "mimeType": mime, "buffer": photo})


def wait_until(page, expression: str, timeout_s: float = 30.0) -> None:
    """Polls a JS expression (page.wait_for_function evaluates strings, which the console's CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {expression}")
        page.wait_for_timeout(100)


def alert_text(page) -> str:
    return page.locator("#view .result .alert").first.inner_text()


def enrol_lfw_person(server: str, folder: Path, person_id: str, name: str | None = None, **form: str) -> None:
    """Enrol the first photo of an LFW person's folder through the API (largest face), as the admin."""
    photo = sorted(folder.glob("*.jpg"))[0]
    r = httpx.post(
        f"{server}/enroll",
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={
            "name": name or folder.name.replace("_", " "),
            "person_id": person_id,
            "face_selection": "largest",
            **form,
        },
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=120,
    )
    assert r.status_code == 201, r.text
