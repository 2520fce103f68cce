"""Slow clients: a request's headers must arrive in time, or the connection is answered 408 and closed.

uvicorn closes an idle keep-alive connection, but a client that opens a connection and sends part
of a request line or of its headers is kept waiting for forever: the ASGI application is not
called before the headers are complete, so no middleware can time it out. This uvicorn protocol
(its httptools one with a timer) starts the clock when the connection opens and when the first
byte of each further request arrives (an idle kept-alive connection is uvicorn's to close), stops
it when the headers are complete, and when it runs out writes a problem+json 408
``request_timeout`` and closes the connection. A stalled *body* is timed out by
``service.api.intake.BodyLimitMiddleware``, which the headers have reached by then.

``facegate serve`` runs uvicorn with ``http="service.api.slow_clients:HeaderTimeoutProtocol"``;
the limit is ``FACEGATE_HEADER_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api.problems import problem
from service.settings import get_settings


def timeout_response(timeout: float) -> bytes:
    """The raw HTTP/1.1 408 a connection gets when its request's headers did not arrive in time."""
    body = problem(
        408,
        "request_timeout",
        "Request timeout",
        f"the request headers did not arrive within {timeout:g} seconds",
        timeout_s=timeout,
    ).body
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + bytes(body)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request's headers."""

    header_timeout: float | None = None  # seconds; None: FACEGATE_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeout = self.header_timeout or get_settings().header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: its body has its own timeout
        self.transport.write(timeout_response(self._timeout))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()  # a next request on a kept-alive connection: the same time for its headers
