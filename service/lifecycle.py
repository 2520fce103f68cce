"""Model versions in a running service: start-up, zero-downtime swap, rollback, watching for new ones.

A swap to version V (``activate``, or automatically when a new version is published and model
watching is on) runs in a background thread while the current model keeps answering:

1. build V's Recognizer: its Embedder (the ONNX file is checked against its card), a fresh FAISS
   index and gallery, sharing the detector;
2. register V's gallery as live: from now on every enrolment or deletion made on this replica
   (gallery listeners) or on another one (the replicator) refreshes it too;
3. load the embeddings already stored for V, then embed every stored reference crop that has
   none (``SyncedGallery.backfill``) and store those embeddings tagged with V;
4. catch up on the change log since step 2 began (covers writes by processes that are not
   replicas, e.g. a CLI, and replication being off);
5. switch: ``current`` is one attribute, replaced in one assignment. A request reads it once
   (``service.api.deps.get_recognizer``), so each answer is computed with one model version, which the
   response reports. Enrolments still in flight on the old version commit, and their listener
   refreshes V, so nothing enrolled during the swap is lost.

The previous version's embeddings stay in the database: rolling back is the same call with the
old version, and only people enrolled since need embedding. The active version is recorded in
``models_dir/active.json`` (see ``service.model_registry``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from service import fpir_limits
from service.approx_index import SizedIndex
from service.crop_embed import CropEmbedder, alignment_meta
from service.decisions import verify_threshold
from service.errors import FaceGateError
from service.gallery import audit
from service.gallery.audit import Caller
from service.gallery.synced import SyncedGallery
from service.metrics import Metrics
from service.model_registry import (
    ModelEntry,
    active_mtime,
    newer,
    read_active,
    scan,
    startup_entry,
    write_active,
)
from service.org_calibration import LabelledSet, calibrate_and_publish
from service.pipeline.detect import FaceDetector
from service.pipeline.embed import Embedder
from service.pipeline.pipeline import FacePipeline
from service.recognition import Recognizer
from service.replication import ChangeFeed
from service.settings import Settings
from service.snapshot import IndexSnapshots, StartResult

log = logging.getLogger(__name__)


class SwapInProgress(FaceGateError):
    status, code, title = 409, "swap_in_progress", "A model swap is running"


class UnknownModel(FaceGateError):
    status, code, title = 404, "model_not_found", "Model version not found"


@dataclass
class SwapJob:
    version: str
    previous: str
    state: str = "running"  # running | done | failed
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    step: str = "building"
    embedded: int = 0
    gallery_size: int = 0
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "previous": self.previous,
            "state": self.state,
            "step": self.step,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "embedded": self.embedded,
            "gallery_size": self.gallery_size,
            "error": self.error,
        }


class ModelLifecycle:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        sessions: sessionmaker[Session],
        detector: FaceDetector,
        providers: list[str] | None,
        feed: ChangeFeed,
        snapshots: IndexSnapshots | None = None,
    ) -> None:
        self.settings = settings
        self.models_dir = Path(settings.models_dir)
        self.metrics = metrics
        self.sessions = sessions
        self.detector = detector
        self.providers = providers
        self.feed = feed
        self.snapshots = snapshots  # start-up from an index snapshot (service.snapshot)
        self.started_from: StartResult | None = None
        self._lock = threading.Lock()
        self._current: Recognizer[SyncedGallery] | None = None
        self._entry: ModelEntry | None = None
        self._shadow: Recognizer[SyncedGallery] | None = None
        self._previous: str | None = None
        self._job: SwapJob | None = None
        self._seen: set[str] = set()
        self._failed: set[str] = set()
        self._active_mtime: float | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ---- building ----

    def build(self, entry: ModelEntry) -> Recognizer[SyncedGallery]:
        embedder = Embedder(entry.folder, self.providers, self.settings.intra_op_threads)
        gallery = SyncedGallery(
            self.sessions,
            SizedIndex(embedder.card.embedding_dim, exact_max=self.settings.exact_index_max),
            embedder.version,
            reembed=CropEmbedder(embedder),
            alignment=alignment_meta(embedder.card.alignment),
        )
        gallery.add_listener(self._propagate)
        pipeline = FacePipeline(self.detector, embedder, self.settings.max_image_pixels)
        return Recognizer(pipeline, gallery, self.settings, self.metrics)

    def start(self) -> Recognizer[SyncedGallery]:
        """Load the start-up version (``active.json``, else ``FACEGATE_MODEL``) and its gallery."""
        entry = startup_entry(self.models_dir, self.settings.model)
        rec = self.build(entry)
        if self.snapshots is not None:
            self.started_from = self.snapshots.start(rec.gallery, self.feed, rec.card.sha256)
        else:
            rec.gallery.load()
        embedded = rec.gallery.backfill()
        fpir_limits.warn_at_startup(rec.card.calibration, self.settings.target_fpir, rec.gallery)
        self._current, self._entry = rec, entry
        self._seen = set(scan(self.models_dir))
        self._active_mtime = active_mtime(self.models_dir)
        self.metrics.gallery_size.set(rec.gallery.size())
        self._announce(rec)
        log.info(
            "model %s %s on %s; gallery: %d people (%d embedded from stored crops)",
            rec.card.name,
            rec.version,
            rec.pipeline.embedder.providers,
            rec.gallery.size(),
            embedded,
        )
        if self.settings.watch_models:
            self._watcher = threading.Thread(target=self._watch, name="facegate-model-watch", daemon=True)
            self._watcher.start()
        return rec

    def _announce(self, rec: Recognizer[SyncedGallery]) -> None:
        """The model answering now and its configured /verify threshold, in the metrics."""
        s = self.settings
        threshold = verify_threshold(rec.card.calibration, s.target_far, s.verify_threshold)
        self.metrics.set_model(rec.card, threshold.score, threshold.similarity)

    @property
    def current(self) -> Recognizer[SyncedGallery]:
        if self._current is None:
            raise RuntimeError("the model lifecycle has not started")
        return self._current

    def current_with_entry(self) -> tuple[Recognizer[SyncedGallery], ModelEntry]:
        """The recognizer answering now and its registry entry, read together."""
        with self._lock:
            if self._current is None or self._entry is None:
                raise RuntimeError("the model lifecycle has not started")
            return self._current, self._entry

    # ---- keeping every live gallery in step ----

    def live_galleries(self) -> list[SyncedGallery]:
        with self._lock:
            recs = [r for r in (self._current, self._shadow) if r is not None]
        return [r.gallery for r in recs]

    def apply_changes(self, person_ids: list[str]) -> None:
        """Changes read from the change log (this or another replica): refresh every live gallery."""
        for gallery in self.live_galleries():
            gallery.refresh(person_ids)
        self.metrics.gallery_size.set(self.current.gallery.size())

    def _propagate(self, person_id: str, source: SyncedGallery) -> None:
        for gallery in self.live_galleries():
            if gallery is not source:
                gallery.refresh([person_id])

    # ---- versions and swaps ----

    def versions(self) -> dict:
        entries = scan(self.models_dir)
        current = self.current.version
        with self._lock:
            job = self._job.to_dict() if self._job else None
        return {
            "active": current,
            "previous": self._previous,
            "versions": [{**e.to_dict(), "active": v == current} for v, e in sorted(entries.items())],
            "swap": job,
        }

    def job(self) -> SwapJob | None:
        return self._job

    def activate(self, version: str, caller: Caller | None = None) -> SwapJob:
        """Start adopting ``version`` in the background (a no-op job when it is already active),
        recording who asked (``caller``) in the audit trail."""
        job = self._start(version)
        if caller is not None:
            audit.record(
                self.sessions,
                audit.row(
                    caller,
                    "model_activate",
                    result=job.state,
                    model_version=version,
                    detail={"previous": job.previous},
                ),
            )
        return job

    def calibrate(
        self, labelled: LabelledSet, target_far: float, caller: Caller, activate: bool = False
    ) -> dict:
        """Calibrate the model in use on an organisation's labelled photos, publish the result as
        a new version (audited), and adopt it when ``activate``. The report, with ``activation``."""
        rec, entry = self.current_with_entry()
        report = calibrate_and_publish(rec.pipeline, entry, labelled, self.models_dir, target_far)
        audit.record(
            self.sessions,
            audit.row(
                caller,
                "calibrate",
                model_version=report["version"],
                detail={"based_on": report["based_on"], "far": report["far"], "frr": report["frr"]},
            ),
        )
        if activate:
            report["activation"] = self.activate(report["version"], caller).to_dict()
        return report

    def _start(self, version: str) -> SwapJob:
        with self._lock:
            if self._job is not None and self._job.state == "running":
                if self._job.version == version:
                    return self._job
                raise SwapInProgress(
                    f"the service is adopting model {self._job.version}; try again when it is done",
                    swap=self._job.to_dict(),
                )
            current = self.current.version
            if version == current:
                job = SwapJob(version, current, state="done", step="already active")
                job.finished_at = job.started_at
                job.gallery_size = self.current.gallery.size()
                job.done.set()
                return job
            entry = scan(self.models_dir).get(version)
            if entry is None:
                raise UnknownModel(f"no model version {version!r} in the models folder", version=version)
            job = SwapJob(version, current)
            self._job = job
        threading.Thread(
            target=self._swap, args=(job, entry), name=f"facegate-swap-{version}", daemon=True
        ).start()
        return job

    def _swap(self, job: SwapJob, entry: ModelEntry) -> None:
        start = time.perf_counter()
        self.metrics.swap_started()
        try:
            new = self.build(entry)
            mark = self.feed.position()
            with self._lock:
                self._shadow = new
            job.step = "embedding the gallery"
            new.gallery.load()

            def progress(done: int, total: int) -> None:
                job.step = f"embedding the gallery ({done}/{total})"
                self.metrics.swap_progress(done, total)

            job.embedded = new.gallery.backfill(progress=progress)
            job.step = "catching up"
            people, _ = self.feed.people_since(mark)
            job.embedded += new.gallery.refresh(people)
            with self._lock:
                old = self.current
                self._current, self._entry, self._shadow = new, entry, None
                self._previous = old.version
                job.state, job.step = "done", "switched"
                job.gallery_size = new.gallery.size()
                job.finished_at = datetime.now(timezone.utc)
            self.metrics.gallery_size.set(new.gallery.size())
            self._announce(new)
            write_active(self.models_dir, entry.version, old.version)
            self._active_mtime = active_mtime(self.models_dir)
            self.metrics.swap_finished("done", time.perf_counter() - start)
            log.info(
                "model swap %s -> %s done in %.1f s (%d crops embedded, %d people)",
                old.version,
                entry.version,
                time.perf_counter() - start,
                job.embedded,
                job.gallery_size,
            )
        except Exception as exc:
            with self._lock:
                self._shadow = None
                job.state, job.error = "failed", f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"
                job.finished_at = datetime.now(timezone.utc)
            self._failed.add(entry.version)
            self.metrics.swap_finished("failed", time.perf_counter() - start)
            log.exception("model swap to %s failed; %s keeps serving", entry.version, job.previous)
        finally:
            job.done.set()

    # ---- watching the models folder ----

    def watch_once(self) -> SwapJob | None:
        """Adopt a newly published version newer than the current one, or the version another
        replica recorded in ``active.json``; returns the started job, if any."""
        if self._job is not None and self._job.state == "running":
            return None
        entries = scan(self.models_dir)
        fresh = [e for v, e in entries.items() if v not in self._seen and v not in self._failed]
        self._seen |= set(entries)
        candidates = [e for e in fresh if newer(e, self._entry)]
        if candidates:
            best = max(candidates, key=lambda e: e.published_at or datetime.min.replace(tzinfo=timezone.utc))
            log.info("new model version %s published: adopting it", best.version)
            return self.activate(best.version)
        mtime = active_mtime(self.models_dir)
        if mtime is not None and mtime != self._active_mtime:
            self._active_mtime = mtime
            wanted = read_active(self.models_dir)
            if wanted and wanted != self.current.version and wanted in entries and wanted not in self._failed:
                log.info("active.json names model %s: adopting it", wanted)
                return self.activate(wanted)
        return None

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.watch_interval):
            try:
                self.watch_once()
            except Exception:
                log.warning("watching %s failed", self.models_dir, exc_info=True)

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        job = self._job
        if job is not None and job.state == "running":
            job.done.wait(timeout=30)


__all__ = ["ModelLifecycle", "SwapInProgress", "SwapJob", "UnknownModel"]
