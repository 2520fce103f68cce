"""The photo work of ``facegate enroll-dir``, in worker processes (or in this one).

A worker process loads the face pipeline once (``init_worker``: the detector and the model the
main process answers with, onnxruntime on one thread, so N workers keep N cores busy) and then
takes one person at a time (``PersonJob``): it tries the person's photos in order through
``prepare_enrolment``, the same decode, detection, alignment, embedding, quality gate and canvas
crop as POST /enroll, and returns the first photo that passes with the reasons the photos before
it were refused (``PersonOutcome``). The gallery stays in the main process, which checks for
duplicates and writes (``service.enroll_dir``).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from service.enrolment import PreparedEnrolment, prepare_enrolment
from service.errors import FaceGateError
from service.pipeline.detect import FaceDetector
from service.pipeline.embed import Embedder
from service.pipeline.pipeline import FacePipeline
from service.pipeline.quality import QualityLimits
from service.schemas import EnrollOptions

if TYPE_CHECKING:
    from service.recognition import Recognizer


def cpu_count() -> int:
    """The cores this process may run on (the default number of workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build the main process's pipeline again (picklable)."""

    models_dir: Path  # holds mtcnn/
    model_dir: Path  # the embedding model's folder
    min_face_size: int
    max_side: int
    thresholds: tuple[float, ...]
    border: str
    max_pixels: int
    providers: tuple[str, ...]
    levels: dict[str, QualityLimits]

    @classmethod
    def of(cls, recognizer: Recognizer) -> WorkerSpec:
        pipeline = recognizer.pipeline
        detector = pipeline.detector
        return cls(
            models_dir=Path(recognizer.settings.models_dir),
            model_dir=pipeline.embedder.model_dir,
            min_face_size=detector.min_face_size,
            max_side=detector.max_side,
            thresholds=detector.thresholds,
            border=detector.border,
            max_pixels=pipeline.max_pixels,
            providers=tuple(pipeline.embedder.providers),
            levels=dict(recognizer.quality_levels),
        )

    def build(self) -> FacePipeline:
        """The pipeline, onnxruntime on one thread per session."""
        providers = list(self.providers)
        detector = FaceDetector(
            self.models_dir,
            min_face_size=self.min_face_size,
            max_side=self.max_side,
            thresholds=self.thresholds,
            providers=providers,
            intra_op_threads=1,
            border=self.border,
        )
        return FacePipeline(detector, Embedder(self.model_dir, providers, threads=1), self.max_pixels)


@dataclass(frozen=True)
class PersonJob:
    person_id: str
    photos: tuple[Path, ...]  # in the order they are tried
    opts: EnrollOptions
    start: int = 0  # the first photo to try (a photo refused later, as a duplicate: the next one)


@dataclass(frozen=True)
class PersonOutcome:
    person_id: str
    accepted: PreparedEnrolment | None  # the first photo from ``start`` that passed
    photo: int | None  # its place in ``PersonJob.photos``
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (photo name, "code: detail")
    tried: int = 0  # photos processed


def try_photos(pipeline: FacePipeline, levels: dict[str, QualityLimits], job: PersonJob) -> PersonOutcome:
    """The person's photos from ``job.start`` until one passes ``prepare_enrolment``."""
    rejected: list[tuple[str, str]] = []
    for i in range(job.start, len(job.photos)):
        photo = job.photos[i]
        try:
            prepared = prepare_enrolment(pipeline, levels, photo.read_bytes(), job.opts)
        except FaceGateError as exc:
            rejected.append((photo.name, f"{exc.code}: {exc.detail}"))
            continue
        except OSError as exc:  # unreadable file
            rejected.append((photo.name, f"unreadable: {exc}"))
            continue
        return PersonOutcome(job.person_id, prepared, i, rejected, i - job.start + 1)
    return PersonOutcome(job.person_id, None, None, rejected, len(job.photos) - job.start)


_worker: tuple[FacePipeline, dict[str, QualityLimits]] | None = None


def init_worker(spec: WorkerSpec) -> None:
    """A worker process's initializer: Ctrl-C is the main process's to handle; load the pipeline once."""
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = (spec.build(), spec.levels)


def work(job: PersonJob) -> PersonOutcome:
    """A worker process's task (after ``init_worker``)."""
    if _worker is None:
        raise RuntimeError("init_worker has not run in this process")
    return try_photos(*_worker, job)
