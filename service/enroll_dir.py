"""Bulk enrolment from a folder of ``<person_id>/<photo>`` (``facegate enroll-dir``).

Each person is enrolled from their first usable photo, tried in name order, as POST /enroll
would enrol it: the photo work (``service.enrolment.prepare_enrolment``: face, quality gate,
canvas) runs in ``workers`` processes (``service.bulk_enroll``; 0: in this process), and this
process keeps the gallery. It takes the workers' answers in the people's order, refuses a
duplicate face (``Recognizer.refuse_duplicate``: against the gallery and the people waiting to be
written, so two folders of one face are caught in one batch too; the person's next photo is then
tried, as before) and writes ``batch_size`` people per transaction (``service.gallery.bulk``).

A batch is written whole or not at all, so an interrupted run (Ctrl-C, a killed process) leaves
every person enrolled or absent; people already enrolled are skipped (one query at the start,
unless ``replace``), so running the command again carries on where it stopped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy import select

from service.bulk_enroll import PersonJob, PersonOutcome, WorkerSpec, init_worker, try_photos, work
from service.errors import DuplicateFace
from service.gallery.audit import Caller
from service.gallery.bulk import BatchResult, NewPerson, enroll_batch
from service.gallery.tables import Person
from service.recognition import PendingFace, Recognizer
from service.schemas import EnrollOptions

CALLER = Caller(None, "cli enroll-dir", frozenset({"admin"}))
DEFAULT_BATCH = 64


@dataclass(frozen=True)
class Rejection:
    person_id: str
    photo: str
    reason: str


@dataclass
class EnrollReport:
    enrolled: int = 0
    already_enrolled: list[str] = field(default_factory=list)  # skipped: enrolled before this run
    rejected: list[Rejection] = field(default_factory=list)
    failed_people: list[str] = field(default_factory=list)  # no photo of theirs was enrolled
    photos: int = 0  # photos processed (accepted or refused)
    people: int = 0  # people decided in this run (accepted or failed; not the skipped)
    batches: int = 0  # write transactions committed
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0  # seconds, set at the end (``seconds`` meanwhile)

    @property
    def seconds(self) -> float:
        return self.elapsed or time.monotonic() - self.started

    @property
    def photos_per_s(self) -> float:
        return self.photos / self.seconds if self.seconds > 0 else 0.0

    @property
    def people_per_s(self) -> float:
        return self.people / self.seconds if self.seconds > 0 else 0.0


class _Runner(Protocol):
    def submit(self, job: PersonJob) -> Future[PersonOutcome]: ...

    def close(self, cancel: bool) -> None: ...


class _InProcess:
    """``workers=0``: the photo work in this process, on the recognizer's own pipeline, when asked for."""

    def __init__(self, recognizer: Recognizer) -> None:
        self.recognizer = recognizer

    def submit(self, job: PersonJob) -> Future[PersonOutcome]:
        future: Future[PersonOutcome] = Future()
        future.set_result(try_photos(self.recognizer.pipeline, self.recognizer.quality_levels, job))
        return future

    def close(self, cancel: bool) -> None:
        pass


class _Workers:
    def __init__(self, recognizer: Recognizer, workers: int) -> None:
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),  # no copy of this process's threads, locks or connections
            initializer=init_worker,
            initargs=(WorkerSpec.of(recognizer),),
        )

    def submit(self, job: PersonJob) -> Future[PersonOutcome]:
        return self.pool.submit(work, job)

    def close(self, cancel: bool) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


def enrolled_ids(recognizer: Recognizer) -> set[str]:
    """Everyone stored (one query)."""
    with recognizer.gallery.session_factory() as s:
        return set(s.scalars(select(Person.person_id)))


def enroll_directory(
    recognizer: Recognizer,
    people: Sequence[Path],
    suffixes: set[str],
    replace: bool,
    allow_duplicate: bool,
    largest_face: bool,
    *,
    workers: int = 0,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Callable[[EnrollReport], None] = lambda _: None,
    on_batch: Callable[[BatchResult], None] = lambda _: None,
) -> EnrollReport:
    """Enrol each folder of ``people`` (its name is the person_id) from its first usable photo.

    ``on_progress`` is called after each person, ``on_batch`` after each committed batch."""
    if workers < 0 or batch_size < 1:
        raise ValueError(f"workers must be >= 0 and batch_size >= 1, got {workers} and {batch_size}")
    report = EnrollReport()
    stored = set() if replace else enrolled_ids(recognizer)
    jobs: list[PersonJob] = []
    for folder in people:
        if folder.name in stored:
            report.already_enrolled.append(folder.name)
            continue
        try:
            opts = EnrollOptions(
                name=folder.name.replace("_", " "),
                person_id=folder.name,
                face_selection="largest" if largest_face else "single",
                allow_duplicate=allow_duplicate,
                replace=replace,
            )
        except ValidationError as exc:  # a folder name that is not a valid person_id
            report.rejected.append(Rejection(folder.name, "-", f"invalid: {exc.errors()[0]['msg']}"))
            report.failed_people.append(folder.name)
            report.people += 1
            continue
        photos = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes))
        if not photos:
            report.rejected.append(Rejection(folder.name, "-", "no photo"))
            report.failed_people.append(folder.name)
            report.people += 1
            continue
        jobs.append(PersonJob(folder.name, photos, opts))
    on_progress(report)
    runner: _Runner = _Workers(recognizer, workers) if workers else _InProcess(recognizer)
    finished = False
    try:
        _run(
            recognizer, runner, jobs, replace, report, batch_size, max(2, 4 * workers), on_progress, on_batch
        )
        finished = True
    finally:
        runner.close(cancel=not finished)
    report.elapsed = time.monotonic() - report.started
    return report


def _run(
    recognizer: Recognizer,
    runner: _Runner,
    jobs: list[PersonJob],
    replace: bool,
    report: EnrollReport,
    batch_size: int,
    window: int,
    on_progress: Callable[[EnrollReport], None],
    on_batch: Callable[[BatchResult], None],
) -> None:
    """Take the workers' outcomes in the people's order (``window`` people in flight), check each
    accepted face for duplicates and write the accepted people in batches."""
    todo = iter(jobs)
    flight: deque[tuple[PersonJob, Future[PersonOutcome]]] = deque()
    batch: list[NewPerson] = []
    pending: list[PendingFace] = []

    def flush() -> None:
        if not batch:
            return
        result = enroll_batch(recognizer.gallery, batch, replace)
        report.enrolled += len(result.stored)
        report.already_enrolled += result.already_enrolled  # enrolled by someone else meanwhile
        report.batches += 1
        recognizer.metrics.gallery_size.set(recognizer.gallery.size())
        batch.clear()
        pending.clear()
        on_batch(result)

    def refill() -> None:
        while len(flight) < window:
            job = next(todo, None)
            if job is None:
                return
            flight.append((job, runner.submit(job)))

    refill()
    while flight:
        job, future = flight.popleft()
        outcome = future.result()
        report.photos += outcome.tried
        report.rejected += [Rejection(job.person_id, photo, reason) for photo, reason in outcome.rejected]
        prepared = outcome.accepted
        if prepared is None or outcome.photo is None:
            report.failed_people.append(job.person_id)
            report.people += 1
            on_progress(report)
            refill()
            continue
        collections = recognizer.enrolment_collections(job.opts, CALLER)
        if not job.opts.allow_duplicate:
            try:
                recognizer.refuse_duplicate(prepared.embedding, job.person_id, collections, pending)
            except DuplicateFace as exc:
                photo = job.photos[outcome.photo]
                report.rejected.append(Rejection(job.person_id, photo.name, f"{exc.code}: {exc.detail}"))
                later = PersonJob(job.person_id, job.photos, job.opts, outcome.photo + 1)
                if later.start < len(later.photos):  # the person's next photo, before anyone else
                    flight.appendleft((later, runner.submit(later)))
                else:
                    report.failed_people.append(job.person_id)
                    report.people += 1
                    on_progress(report)
                refill()
                continue
        name = job.opts.name
        batch.append(
            NewPerson(
                person_id=job.person_id,
                name=name,
                **prepared.stored(),
                audit=recognizer.enrolment_audit(prepared, CALLER),
            )
        )
        pending.append(PendingFace(job.person_id, name, prepared.embedding, collections))
        report.people += 1
        if len(batch) >= batch_size:
            flush()
        on_progress(report)
        refill()
    flush()
