"""Bulk enrolment from a folder of ``<person_id>/<photo>``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from service.errors import FaceGateError
from service.gallery.audit import Caller
from service.recognition import Recognizer
from service.schemas import EnrollOptions


@dataclass(frozen=True)
class Rejection:
    person_id: str
    photo: str
    reason: str


@dataclass
class EnrollReport:
    enrolled: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed_people: list[str] = field(default_factory=list)


def enroll_directory(
    recognizer: Recognizer,
    people: Iterable[Path],
    suffixes: set[str],
    replace: bool,
    allow_duplicate: bool,
    largest_face: bool,
    on_person: Callable[[], None] = lambda: None,
) -> EnrollReport:
    caller = Caller(None, "cli enroll-dir", frozenset({"admin"}))
    report = EnrollReport()
    for folder in people:
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
        done = False
        for photo in photos:
            try:
                opts = EnrollOptions(
                    name=folder.name.replace("_", " "),
                    person_id=folder.name,
                    face_selection="largest" if largest_face else "single",
                    allow_duplicate=allow_duplicate,
                    replace=replace,
                )
                recognizer.enroll(photo.read_bytes(), opts, caller)
            except FaceGateError as exc:
                report.rejected.append(Rejection(folder.name, photo.name, f"{exc.code}: {exc.detail}"))
                if exc.code == "already_enrolled":
                    break
                continue
            except ValueError as exc:  # e.g. a folder name that is not a valid person_id
                report.rejected.append(Rejection(folder.name, photo.name, f"invalid: {exc}"))
                break
            report.enrolled += 1
            done = True
            break
        if not done:
            if not photos:
                report.rejected.append(Rejection(folder.name, "-", "no photo"))
            report.failed_people.append(folder.name)
        on_person()
    return report
