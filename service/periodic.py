"""A daemon thread that runs one job every ``interval`` seconds until it is stopped.

The service's background work (replication polling, the consistency check, index snapshots, the
audit purge) runs this way: a failing run is logged and tried again at the next tick, never
ending the thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """``job`` every ``interval`` seconds on a thread called ``name`` (``interval`` <= 0: never
    started); ``first_now`` runs it once before the first wait; ``on_error`` is called after a
    failed run has been logged as ``what`` failed."""

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], object],
        what: str,
        *,
        first_now: bool = False,
        on_error: Callable[[], object] | None = None,
        join_timeout: float = 5.0,
    ) -> None:
        self.name, self.interval, self.job, self.what = name, interval, job, what
        self.first_now, self.on_error, self.join_timeout = first_now, on_error, join_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _tick(self) -> None:
        try:
            self.job()
        except Exception:  # a database hiccup: try again at the next tick
            log.warning("%s failed", self.what, exc_info=True)
            if self.on_error is not None:
                self.on_error()

    def _run(self) -> None:
        if self.first_now:
            self._tick()
        while not self._stop.wait(self.interval):
            self._tick()

    def start(self) -> bool:
        """Start the thread; False when the interval is off or it already runs."""
        if self.interval <= 0 or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout)
            self._thread = None
