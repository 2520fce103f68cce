"""Prometheus metrics: per-route request counts and latencies, scores, gallery size, stage times.

The HTTP middleware that fills the request counters is ``service.api.metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))
_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """One registry per application, so that several apps (tests, replicas) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "facegate_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "facegate_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = Histogram(
            "facegate_score", "Scores returned", ["operation"], buckets=_SCORE_BUCKETS, registry=self.registry
        )
        self.decisions = Counter(
            "facegate_decisions_total", "Decisions taken", ["operation", "result"], registry=self.registry
        )
        self.stage = Histogram(
            "facegate_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.gallery_size = Gauge("facegate_gallery_size", "Enrolled people", registry=self.registry)

    def observe_stages(self, stages: dict[str, float]) -> None:
        for name, ms in stages.items():
            self.stage.labels(name).observe(ms / 1000.0)
