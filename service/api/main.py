"""Builds the FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service import __version__
from service.api import problems
from service.api.admission import AdmissionMiddleware
from service.api.auth_first import KeyFirstMiddleware
from service.api.intake import BodyLimitMiddleware
from service.api.metrics import MetricsMiddleware
from service.api.rate_limit import RateLimitMiddleware
from service.api.routes import admin, audit, collections, compare, keys, people, recognition, system
from service.api.routes import liveness as liveness_routes
from service.api.routes.console import mount_console
from service.audit_retention import AuditPurger
from service.metrics import Metrics
from service.settings import Settings, get_settings
from service.state import build_state

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(settings, metrics)
        app.state.facegate = state
        purger = AuditPurger(state.sessions, settings.audit_retention_days, settings.audit_purge_interval)
        app.state.audit_purger = purger
        purger.start()  # audit retention: at start-up, then every FACEGATE_AUDIT_PURGE_INTERVAL
        try:
            yield
        finally:
            purger.stop()
            app.state.facegate = None
            state.close()

    metrics = Metrics()
    app = FastAPI(
        title="FaceGate",
        version=__version__,
        description="Face verification: enrol one photo per person, verify (1:1) and identify (1:N).",
        lifespan=lifespan,
    )
    app.state.facegate = None
    problems.install(app)
    for router in (
        recognition.router,
        compare.router,
        people.router,
        collections.router,
        keys.router,
        system.router,
        admin.router,
        audit.router,
        liveness_routes.router,
    ):
        app.include_router(router)
    mount_console(app)
    # Outermost last: metrics -> key check (before any body is read) -> rate limits (per key, else
    # per client address; a refused body is never read) -> body limit and stall timeout ->
    # admission of the heavy work (with the body read) -> routes.
    app.add_middleware(
        AdmissionMiddleware, limit=settings.max_concurrent_work, queue=settings.max_queued_work
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, stall_timeout=settings.body_timeout
    )
    app.add_middleware(
        RateLimitMiddleware,
        limits={
            "admin": settings.rate_limit_admin,
            "enroll": settings.rate_limit_enroll,
            "verify": settings.rate_limit_verify,
            "address": settings.rate_limit_address,
        },
        storage=settings.rate_limit_storage,
        trusted_proxies=settings.trusted_proxies,
    )
    app.add_middleware(KeyFirstMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
