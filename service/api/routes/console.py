"""The web console: ``/`` serves its page and ``/static`` its scripts, styles and icon.

The console is plain HTML, CSS and ES modules (no build step, nothing fetched from elsewhere)
and talks to the service only through the public HTTP API, with the key the user signs in with.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

# Everything the page loads comes from this origin; blob: URLs carry photos and crops,
# mediastream: the webcam preview.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _ConsoleFiles(StaticFiles):
    """Static files revalidated on each load, so an upgraded service never runs stale scripts."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def mount_console(app: FastAPI, static_dir: Path = STATIC_DIR) -> None:
    """Serve the console at ``/`` and its files under ``/static``."""
    index = static_dir / "index.html"

    @app.get("/", include_in_schema=False)
    def console_page() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", _ConsoleFiles(directory=static_dir), name="static")
