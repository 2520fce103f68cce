"""Is the index in step with the database: a cheap answer for readiness, the full one in the background.

``/readyz`` used to compare every stored embedding id with the index on every probe, under the
gallery's write lock (about 30 ms at 10^4 people, so seconds at 10^6). ``index_ready`` answers
from counts and change-log positions instead:

1. the gallery is not stale and its index and maps hold as many entries (no database);
2. the embeddings stored for the model version are counted once per change-log position (the
   count is cached until the log moves: a probe without writes in between reads only the log's
   newest id, an indexed MAX);
3. when the counts differ, they are read again under the gallery's write lock, so a local write
   between the two reads does not count; a change-log position that moved meanwhile, or changes
   the replicator has not applied yet, mean changes on their way (replication lag has its own
   metric), not a broken index.

A change made behind the change log's back (a hand-edited row) keeps the counted position, so
only the full comparison sees it:

``ConsistencyWatch`` runs the full comparison (``Gallery.consistency_report``) every
``FACEGATE_CONSISTENCY_INTERVAL`` seconds on a background thread and on demand
(``GET /admin/consistency``); its result is the ``facegate_index_consistent`` and
``facegate_index_mismatched_embeddings`` gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.gallery.consistency import ConsistencyReport
from service.gallery.gallery import Gallery
from service.metrics import Metrics
from service.periodic import Periodic
from service.replication import ChangeFeed, Replicator

log = logging.getLogger(__name__)

LOCK_WAIT = 0.5  # seconds a readiness probe waits for the write lock to confirm a difference


class ReadinessProbe:
    """The index check of ``/readyz``: counts and change-log positions, never a full scan."""

    def __init__(self, feed: ChangeFeed, replicator: Replicator | None = None) -> None:
        self.feed = feed
        self.replicator = replicator
        self._lock = threading.Lock()
        self._cached: tuple[str, int, int] | None = None  # (model version, log position, stored count)

    def _stored(self, gallery: Gallery) -> tuple[int, bool]:
        """(stored count, whether the change log stood still while it was counted)."""
        before = self.feed.position()
        with self._lock:
            cached = self._cached
        if cached is not None and cached[:2] == (gallery.model_version, before):
            return cached[2], True
        count = gallery.stored_count()
        after = self.feed.position()
        if after == before:
            with self._lock:
                self._cached = (gallery.model_version, before, count)
        return count, after == before

    def _pending(self, position: int) -> bool:
        """Changes up to ``position`` that the replicator (when it runs) has not applied yet."""
        r = self.replicator
        return r is not None and r.interval > 0 and r.position < position

    def index_ready(self, gallery: Gallery) -> bool:
        if not gallery.counts_agree():
            return False
        stored, still = self._stored(gallery)
        if stored == len(gallery.index):
            return True
        lock = gallery.writes_paused(LOCK_WAIT)
        if lock is None:  # a long write is running: judge at the next probe
            return True
        try:
            with self._lock:
                self._cached = None
            position = self.feed.position()
            stored, still = self._stored(gallery)
            if stored == len(gallery.index) and gallery.counts_agree():
                return True
            return not still or self._pending(position)
        finally:
            lock.release()


@dataclass(frozen=True)
class CheckResult:
    report: ConsistencyReport
    checked_at: float  # time.time()
    seconds: float  # how long the comparison took


class ConsistencyWatch:
    """The full database-vs-index comparison, every ``interval`` seconds (0: only on demand)."""

    def __init__(
        self,
        gallery: Callable[[], Gallery],
        metrics: Metrics,
        interval: float,
        catch_up: Callable[[], object] | None = None,
    ) -> None:
        self.gallery = gallery
        self.metrics = metrics
        self.interval = interval
        self.catch_up = catch_up  # applies pending replicated changes before a second look
        self.last: CheckResult | None = None
        self._run_lock = threading.Lock()
        self._worker = Periodic("facegate-consistency", interval, self.check, "consistency check")

    def check(self) -> CheckResult:
        """Compare now. A difference is looked at twice, the second time after the replicator
        has caught up, so a change still on its way from another replica is not reported."""
        with self._run_lock:
            started = time.perf_counter()
            gallery = self.gallery()
            report = gallery.consistency_report()
            if not report.consistent and self.catch_up is not None:
                self.catch_up()
                report = gallery.consistency_report()
            result = CheckResult(report, time.time(), time.perf_counter() - started)
            self.last = result
            self.metrics.consistency_checked(report.consistent, report.mismatched, result.checked_at)
            if not report.consistent:
                log.warning(
                    "index of %s differs from the database: %d missing, %d extra, %d misattributed%s",
                    report.model_version,
                    report.missing_total,
                    report.extra_total,
                    report.misattributed_total,
                    " (stale)" if report.stale else "",
                )
            return result

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()
