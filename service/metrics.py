"""Prometheus metrics on one registry per application (tests and replicas in one process never collide).

What an operator reads (``/metrics``, and ``deploy/grafana/facegate-dashboard.json``):

- requests: per route template, method and status; latency; requests in flight; every
  problem+json answered, by its ``code`` and status (filled by ``service.api.metrics``);
- decisions: scores, similarities and decisions per operation and ``model_version``, so that two
  calibrations never mix in one histogram after a swap;
- the build (package, Python, onnxruntime) and the model in use (version, name, sha256, its
  /verify threshold); gallery size; time per pipeline stage;
- model swaps: people re-embedded out of how many, swaps done and failed;
- replication: the last change-log position applied and the seconds from a change being written
  to this replica applying it;
- the standard process (RSS, CPU, file descriptors) and Python (platform, GC) collectors.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import onnxruntime
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from service import __version__

if TYPE_CHECKING:
    from service.model_card import ModelCard

# Scores are P(same) (the card's logistic calibration). The shipped models' /verify thresholds
# (FAR 1e-3) lie between 0.58 (sface-1.1.0) and 0.95, /identify's (FPIR 0.01 over 100 to 10,000 people: FAR 1e-4
# to 1e-6) between 0.89 and 0.9994, and genuine pairs land above 0.999: the buckets are fine there.
SCORE_BUCKETS = (
    *(0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85),
    *(0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99),
    *(0.995, 0.998, 0.999, 0.9995, 0.9999, 0.99999),
    1.0,
)
# Cosine similarities. The shipped models' thresholds from FAR 1e-3 to 1e-6: SFace 0.39-0.61,
# the adapted SFace 0.52-0.69,
# fused 0.70-0.81, dlib 0.93-0.97 (each card's far_table): 0.025 apart up to 0.85, 0.01 above.
# No negative bound: the first bucket holds every similarity up to 0 (a negative bound would drop
# the histogram's _sum).
SIMILARITY_BUCKETS = (
    *(0.0, 0.1, 0.2),
    *(round(0.2 + 0.025 * i, 3) for i in range(1, 27)),  # 0.225 .. 0.85
    *(round(0.85 + 0.01 * i, 2) for i in range(1, 15)),  # 0.86 .. 0.99
    0.995,
    1.0,
)
# Seconds: health checks and most stages take well under 5 ms.
LATENCY_BUCKETS = (
    *(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075),
    *(0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# Seconds from a change being written to a replica applying it (polling every 0.5 s by default).
LAG_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

SWAP_RESULTS = ("done", "failed")


def build_labels() -> dict[str, str]:
    return {
        "version": __version__,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


class Metrics:
    """Every metric of one application, on its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        # requests (service.api.metrics)
        self.requests = Counter(
            "facegate_requests_total", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "facegate_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("facegate_requests_in_flight", "HTTP requests being answered", registry=r)
        self.problems = Counter(
            "facegate_problems_total",
            "problem+json errors answered, by their stable code",
            ["code", "status", "route"],
            registry=r,
        )

        # decisions
        self.scores = Histogram(
            "facegate_score",
            "Scores (calibrated P(same)) returned: /verify's, and the best candidate's on /identify",
            ["operation", "model_version"],
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        self.similarities = Histogram(
            "facegate_similarity",
            "Cosine similarities behind the scores",
            ["operation", "model_version"],
            buckets=SIMILARITY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "facegate_decisions_total",
            "Decisions taken",
            ["operation", "result", "model_version"],
            registry=r,
        )
        self.stage = Histogram(
            "facegate_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.gallery_size = Gauge("facegate_gallery_size", "Enrolled people", registry=r)

        # what runs
        Info("facegate_build", "The FaceGate build", registry=r).info(build_labels())
        self.model = Info("facegate_model", "The model version answering now", registry=r)
        self.verify_threshold = Gauge(
            "facegate_verify_threshold",
            "The configured /verify threshold of the model in use",
            ["scale"],
            registry=r,
        )

        # model swaps (service.lifecycle)
        self.swap_running = Gauge("facegate_swap_running", "1 while a model swap runs", registry=r)
        self.swap_embedded = Gauge(
            "facegate_swap_people_embedded",
            "People re-embedded so far by the running (else the last) model swap",
            registry=r,
        )
        self.swap_total = Gauge(
            "facegate_swap_people_total",
            "People the running (else the last) model swap has to re-embed",
            registry=r,
        )
        self.swaps = Counter("facegate_swaps_total", "Model swaps finished", ["result"], registry=r)
        for result in SWAP_RESULTS:
            self.swaps.labels(result)
        self.swap_seconds = Gauge(
            "facegate_swap_last_duration_seconds", "How long the last finished model swap took", registry=r
        )

        # replication (service.replication)
        self.replication_position = Gauge(
            "facegate_replication_position", "The last change-log id this replica applied", registry=r
        )
        self.replication_lag = Histogram(
            "facegate_replication_lag_seconds",
            "Seconds from a change being written to this replica applying it",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.replication_last_lag = Gauge(
            "facegate_replication_last_lag_seconds",
            "The lag of the newest change applied",
            registry=r,
        )
        self.replication_failures = Counter(
            "facegate_replication_poll_failures_total", "Reads of the change log that failed", registry=r
        )

        # the full database-vs-index check (service.consistency)
        self.index_consistent = Gauge(
            "facegate_index_consistent",
            "1 when the last full check found the index equal to the database, 0 when not",
            registry=r,
        )
        self.index_mismatched = Gauge(
            "facegate_index_mismatched_embeddings",
            "Embeddings missing from, extra in or misattributed by the index at the last full check",
            registry=r,
        )
        self.index_checked_at = Gauge(
            "facegate_index_checked_timestamp_seconds", "When the last full check ran (Unix time)", registry=r
        )

    def observe_stages(self, stages: dict[str, float]) -> None:
        for name, ms in stages.items():
            self.stage.labels(name).observe(ms / 1000.0)

    def observe_decision(
        self,
        operation: str,
        model_version: str,
        result: str,
        score: float | None = None,
        similarity: float | None = None,
    ) -> None:
        """One decision, with the score and similarity it was taken on (none: an empty gallery)."""
        self.decisions.labels(operation, result, model_version).inc()
        if score is not None:
            self.scores.labels(operation, model_version).observe(score)
        if similarity is not None:
            self.similarities.labels(operation, model_version).observe(similarity)

    def set_model(self, card: ModelCard, threshold_score: float, threshold_similarity: float) -> None:
        """The model version answering now (at start-up and after each swap)."""
        self.model.info({"version": card.version, "name": card.name, "sha256": card.sha256})
        self.verify_threshold.labels("score").set(threshold_score)
        self.verify_threshold.labels("similarity").set(threshold_similarity)

    def swap_started(self) -> None:
        self.swap_running.set(1)
        self.swap_embedded.set(0)
        self.swap_total.set(0)

    def swap_progress(self, done: int, total: int) -> None:
        self.swap_embedded.set(done)
        self.swap_total.set(total)

    def swap_finished(self, result: str, seconds: float) -> None:
        self.swaps.labels(result).inc()
        self.swap_seconds.set(seconds)
        self.swap_running.set(0)

    def consistency_checked(self, consistent: bool, mismatched: int, at: float) -> None:
        self.index_consistent.set(1 if consistent else 0)
        self.index_mismatched.set(mismatched)
        self.index_checked_at.set(at)

    def replicated(self, position: int, written_at: Iterable[datetime | None] = ()) -> None:
        """Changes up to ``position`` applied now; ``written_at``: when each was written (UTC).

        The lag is measured against this process's clock: replicas on other hosts need their
        clocks in step (NTP) for it to mean anything below a second.
        """
        now = datetime.now(timezone.utc)
        last = None
        for at in written_at:
            if at is None:
                continue
            if at.tzinfo is None:
                at = at.replace(tzinfo=timezone.utc)
            last = max((now - at).total_seconds(), 0.0)
            self.replication_lag.observe(last)
        if last is not None:
            self.replication_last_lag.set(last)
        self.replication_position.set(position)
