"""Everything the running application holds, built once in the lifespan."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from service.auth import KeyStore
from service.consistency import ConsistencyWatch, ReadinessProbe
from service.fpir_limits import PromisedFpirCollector
from service.gallery.cipher import TemplateCipher
from service.gallery.db import make_engine, migrate, session_factory
from service.gallery.encryption import check_keys
from service.lifecycle import ModelLifecycle
from service.metrics import Metrics
from service.pipeline.detect import FaceDetector
from service.pipeline.runtime import choose_providers
from service.recognition import Recognizer
from service.replication import ChangeFeed, Replicator
from service.settings import Settings
from service.snapshot import IndexSnapshots, SnapshotSaver

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    engine: Engine
    sessions: sessionmaker
    keys: KeyStore
    lifecycle: ModelLifecycle
    replicator: Replicator
    readiness: ReadinessProbe
    consistency: ConsistencyWatch
    snapshots: SnapshotSaver | None = None

    @property
    def recognizer(self) -> Recognizer:
        """The model version answering now; a swap replaces it in one assignment."""
        return self.lifecycle.current

    def database_ok(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not ready"
            log.warning("database check failed", exc_info=True)
            return False

    def close(self) -> None:
        self.consistency.stop()
        if self.snapshots is not None:
            self.snapshots.stop()
        self.replicator.stop()
        self.lifecycle.close()
        if self.snapshots is not None:
            try:  # the next start loads it instead of rebuilding the index
                self.replicator.poll_once()  # the position the snapshot records as far as it goes
                self.snapshots.save()
            except Exception:
                log.warning("saving the index snapshot at shutdown failed", exc_info=True)
        self.engine.dispose()


def ensure_keys(keys: KeyStore, settings: Settings) -> str | None:
    """Make sure an admin key exists; returns a newly created key's plaintext (to show once)."""
    if settings.admin_key:
        keys.ensure(settings.admin_key, "admin (FACEGATE_ADMIN_KEY)", {"admin"})
        return None
    if keys.count_active() == 0:
        plaintext, _ = keys.create("initial admin", {"admin"})
        return plaintext
    return None


def show_created_key(plaintext: str) -> None:
    """Show the admin key created at the first start on standard output, once.

    This is the service's one console write outside its CLI, by design: the key is written
    out rather than logged because this is the only time it is ever shown, and a secret must
    not reach the logs.
    """
    sys.stdout.write(
        f"\nFaceGate created an admin API key (shown once, store it now):\n\n    {plaintext}\n\n"
    )
    sys.stdout.flush()


def build_state(settings: Settings, metrics: Metrics) -> AppState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    cipher = TemplateCipher.from_setting(settings.encryption_keys)
    sessions = session_factory(engine, cipher)
    check_keys(sessions)  # templates sealed with a key that is not configured (or is wrong): no start
    keys = KeyStore(sessions)
    created = ensure_keys(keys, settings)
    if created:
        show_created_key(created)
    providers = choose_providers(settings.execution_provider)
    detector = FaceDetector(
        settings.models_dir,
        min_face_size=settings.min_face_size,
        max_side=settings.detect_max_side,
        providers=providers,
    )
    feed = ChangeFeed(sessions)
    position = feed.position()  # before loading: later changes are replayed (refresh is idempotent)
    store = None
    if settings.index_snapshots:
        store = IndexSnapshots(settings.index_snapshot_dir or settings.data_dir / "index-snapshots", cipher)
    lifecycle = ModelLifecycle(settings, metrics, sessions, detector, providers, feed, store)
    lifecycle.start()
    replicator = Replicator(feed, lifecycle.apply_changes, settings.sync_interval, position, metrics)
    replicator.start()
    saver = None
    if store is not None:
        saver = SnapshotSaver(
            store,
            lambda: (lifecycle.current.gallery, lifecycle.current.card.sha256),
            lambda: replicator.position,
            feed,
            settings.index_snapshot_interval,
        )
        saver.start()
    metrics.registry.register(
        PromisedFpirCollector(
            lambda: (lifecycle.current.gallery, lifecycle.current.card.calibration), settings.target_fpir
        )
    )
    readiness = ReadinessProbe(feed, replicator)
    consistency = ConsistencyWatch(
        lambda: lifecycle.current.gallery, metrics, settings.consistency_interval, replicator.poll_once
    )
    consistency.start()
    return AppState(
        settings, metrics, engine, sessions, keys, lifecycle, replicator, readiness, consistency, saver
    )
