"""Bulk enrolment speed: `facegate enroll-dir` on N LFW people with 1 worker and with more.

    nice -n 5 python bench/enroll_dir.py [--people 300] [--workers 1 2] [--batch-size 64]

One folder per person (the first N LFW people by name, symlinked into a temporary directory,
never into the repository), enrolled into a fresh SQLite gallery for each worker count, through
the command's own code (``service.state.build_state`` and ``service.enroll_dir.enroll_directory``,
as ``facegate enroll-dir`` runs them) with the shipped default model. Each person's photos are
tried in name order until one is enrolled, so photos counts every photo processed, refused ones
included. The time is the whole run: starting the worker processes (each loads the detector and
the model) to the last batch committed; ``main_cpu_s`` is the CPU time of this process (with
``--workers 0`` the photo work too, else the gallery, the duplicate check and the writes, and
building the service's state before each run) and ``worker_cpu_s`` that of the workers together:
beside the elapsed time it says how much of the cores the workers got. The machine's load average before each run is printed:
on a machine whose cores other jobs share, more workers than idle cores gain nothing.

The last line: ``enroll-dir: people=<n> workers=<w> photos_per_s=<x> ...`` for the last run.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.cli import PHOTO_SUFFIXES  # noqa: E402
from service.enroll_dir import EnrollReport, enroll_directory  # noqa: E402
from service.metrics import Metrics  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.state import build_state  # noqa: E402

ADMIN_KEY = "fg_bench_admin_key_0123456789abcdef0123456789"


def lfw_images() -> Path:
    from training.paths import paths

    images = paths().data / "lfw" / "images"
    if not images.is_dir():
        raise SystemExit(f"LFW not found at {images}; set FACEGATE_DATA")
    return images


def people_dir(images: Path, n: int, root: Path) -> list[Path]:
    """The first ``n`` LFW people by name, as root/<person>/ symlinks to their folders."""
    out = []
    for person in sorted(p for p in images.iterdir() if p.is_dir())[:n]:
        link = root / person.name
        link.symlink_to(person, target_is_directory=True)
        out.append(link)
    return out


def run(people: list[Path], workers: int, batch_size: int, var: Path) -> EnrollReport:
    settings = Settings(
        database_url=f"sqlite:///{var / 'facegate.db'}",
        data_dir=var,
        admin_key=ADMIN_KEY,
        consistency_interval=3600,
    )
    state = build_state(settings, Metrics())
    try:
        return enroll_directory(
            state.recognizer,
            people,
            PHOTO_SUFFIXES,
            replace=False,
            allow_duplicate=False,
            largest_face=False,
            workers=workers,
            batch_size=batch_size,
        )
    finally:
        state.close()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=300)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    images = lfw_images()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = []
    with tempfile.TemporaryDirectory(prefix="fg-bench-enroll-") as tmp:
        root = Path(tmp) / "people"
        root.mkdir()
        people = people_dir(images, args.people, root)
        print(f"{len(people)} LFW people, {cores} cores on this machine, batch size {args.batch_size}")
        base = None
        for w in args.workers:
            load = os.getloadavg()[0]
            cpu, children = time.process_time(), _children_cpu()
            report = run(people, w, args.batch_size, Path(tmp) / f"var-{w}")
            main_cpu = time.process_time() - cpu  # this process: the gallery, the duplicate check, the writes
            worker_cpu = _children_cpu() - children  # the worker processes (reaped when the run ends)
            base = base or report.photos_per_s
            print(
                f"workers={w}: enrolled {report.enrolled}, refused {len(report.failed_people)}, "
                f"{report.photos} photos in {report.elapsed:.1f} s: {report.photos_per_s:.1f} photos/s, "
                f"{report.people_per_s:.1f} people/s; CPU: main process {main_cpu:.1f} s, workers "
                f"{worker_cpu:.1f} s "
                f"(load average before: {load:.2f})",
                flush=True,
            )
            lines.append(
                f"enroll-dir: people={len(people)} workers={w} photos_per_s={report.photos_per_s:.2f} "
                f"people_per_s={report.people_per_s:.2f} photos={report.photos} enrolled={report.enrolled} "
                f"elapsed_s={report.elapsed:.1f} main_cpu_s={main_cpu:.1f} worker_cpu_s={worker_cpu:.1f} speedup={report.photos_per_s / base:.2f} cores={cores} "
                f"load_before={load:.2f}"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
