"""Admission of the heavy requests: a bounded number at work, a bounded queue, 503 beyond it.

Decoding, detecting and embedding a photo takes CPU time and, for a large photo, memory; running
every request that arrives at once only divides the CPUs among them and adds their memory up.
The photo routes (and a calibration) therefore run at most ``limit`` at a time; up to ``queue``
more wait for a slot, in arrival order, and a request that finds the queue full is answered at
once with 503 ``busy`` and a ``Retry-After`` (seconds, from the recent time per request and the
requests ahead). The middleware sits inside the key check and the body limit: a request is
admitted with its body read, so a slow upload never holds a slot.

When the last admitted request leaves and a large one (a body of ``LARGE_BODY`` bytes or more)
was among those served since, the freed memory is handed back to the operating system
(``service.memory.release_free_memory``, in a worker thread), so that a burst of large photos does
not leave the process at its peak size; small requests never pay for it.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Iterable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.problems import problem
from service.memory import LARGE_BODY, release_free_memory

HEAVY_ROUTES = frozenset(
    {"/enroll", "/verify", "/identify", "/compare", "/admin/calibrate", "/liveness/check"}
)


def machine_slots() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class Admission:
    """``limit`` slots and ``queue`` places to wait for one (used on one event loop)."""

    def __init__(self, limit: int, queue: int) -> None:
        if limit < 1 or queue < 0:
            raise ValueError(f"limit must be >= 1 and queue >= 0, got {limit}, {queue}")
        self.limit = limit
        self.queue = queue
        self._slots = asyncio.Semaphore(limit)
        self._admitted = 0  # at work or waiting
        self._seconds = 0.0  # moving average of the time at work per request
        self._large = False  # a large request was served since freed memory was last handed back

    @property
    def admitted(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        """Seconds after which a refused request may find room: the queue's expected drain time."""
        per_request = self._seconds or 1.0
        return max(1, math.ceil(per_request * self._admitted / self.limit))

    def try_enter(self) -> bool:
        if self._admitted >= self.limit + self.queue:
            return False
        self._admitted += 1
        return True

    def leave(self) -> None:
        self._admitted -= 1

    async def run(self, work, large: bool = False) -> None:
        """Wait for a slot (after ``try_enter``), run ``work()``, free the slot and the place."""
        self._large = self._large or large
        try:
            async with self._slots:
                start = time.perf_counter()
                try:
                    await work()
                finally:
                    took = time.perf_counter() - start
                    self._seconds = took if not self._seconds else 0.8 * self._seconds + 0.2 * took
        finally:
            self.leave()
        if self._admitted == 0 and self._large:
            self._large = False
            await run_in_threadpool(release_free_memory)


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, limit: int, queue: int, paths: Iterable[str] = HEAVY_ROUTES) -> None:
        self.app = app
        self.admission = Admission(limit or machine_slots(), queue)
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if not admission.try_enter():
            seconds = admission.retry_after()
            response = problem(
                503,
                "busy",
                "Service busy",
                f"{admission.limit} requests are being processed and {admission.queue} are waiting; "
                f"retry in {seconds} s",
                scope.get("path", ""),
                headers={"Retry-After": str(seconds)},
                retry_after_s=seconds,
            )
            await response(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        large = length.isdigit() and int(length) >= LARGE_BODY
        await admission.run(lambda: self.app(scope, receive, send), large)
