"""When the retraining job runs: on demand, on a schedule, or after N new enrolments.

``facegate-train retrain`` runs the job once (on demand; compose: ``docker compose --profile
retrain run --rm retrain``). With ``--every-hours H`` (``FACEGATE_RETRAIN_EVERY_HOURS``) or
``--after-enrolments N`` (``FACEGATE_RETRAIN_AFTER_ENROLMENTS``) it stays up and runs the job when
the schedule is due or when N people were enrolled since the model in use was published (its
card's ``published_at``; the shipped models, which have none, count every enrolment), checking
every ``--check-seconds``. A refused or unusable run waits for the next trigger; after any run
the enrolment count starts again from that run (a refused run does not retry on every check).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select

from service.gallery.db import make_engine, session_factory
from service.gallery.tables import Person

log = logging.getLogger(__name__)


def enrolled_since(database_url: str, since: datetime | None) -> int:
    """People enrolled after ``since`` (every person when None)."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as s:
            q = select(func.count()).select_from(Person)
            if since is not None:
                q = q.where(Person.created_at > since)
            return int(s.execute(q).scalar_one())
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Trigger:
    every_hours: float = 0.0  # 0: no schedule
    after_enrolments: int = 0  # 0: not on enrolments

    @property
    def looping(self) -> bool:
        return self.every_hours > 0 or self.after_enrolments > 0

    def due(self, last_run: float | None, now: float, enrolments: int) -> str | None:
        """Why the job should run now, or None."""
        if self.after_enrolments > 0 and enrolments >= self.after_enrolments:
            return f"{enrolments} people enrolled since the last model (threshold {self.after_enrolments})"
        if self.every_hours > 0 and (last_run is None or now - last_run >= self.every_hours * 3600.0):
            return f"schedule: every {self.every_hours:g} h"
        return None


def loop(
    trigger: Trigger,
    job: Callable[[], int],
    enrolments: Callable[[datetime | None], int],
    model_published: Callable[[], datetime | None],
    check_seconds: float,
    max_runs: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run ``job`` whenever ``trigger`` is due; returns the number of runs (``max_runs``: tests)."""
    last_run: float | None = None
    counted_from: datetime | None = None
    runs = 0
    while max_runs is None or runs < max_runs:
        published = model_published()
        since = max((d for d in (published, counted_from) if d is not None), default=None)
        reason = trigger.due(last_run, clock(), enrolments(since))
        if reason is None:
            sleep(check_seconds)
            continue
        log.info("retraining: %s", reason)
        code = job()
        log.info("retraining finished with exit code %d", code)
        runs += 1
        last_run, counted_from = clock(), datetime.now(timezone.utc)
    return runs
