"""GET /audit: the access log, filtered and paginated (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from service.api.deps import AdminCaller, StateDep
from service.api.problems import problem_responses
from service.gallery.audit_query import AuditFilter, read_page
from service.schemas import PERSON_ID_PATTERN, AuditPage, UtcTime

router = APIRouter(tags=["audit"])

MAX_ID = 2**31 - 1  # audit ids are 32-bit integers on every database
# service.gallery.audit.ACTIONS, spelled out so the document lists them (a test keeps them equal)
Action = Literal[
    "audit_purge",
    "calibrate",
    "compare",
    "delete",
    "enroll",
    "export",
    "identify",
    "key_create",
    "key_revoke",
    "liveness",
    "model_activate",
    "people_sync",
    "person_update",
    "reactivate",
    "replace",
    "suspend",
    "verify",
]


@router.get("/audit", response_model=AuditPage, responses=problem_responses(401, 403, 422, 503))
def list_audit(
    state: StateDep,
    caller: AdminCaller,
    person_id: Annotated[
        str | None, Query(pattern=PERSON_ID_PATTERN, description="rows about this person")
    ] = None,
    key_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="rows of this API key (GET /keys)")
    ] = None,
    action: Annotated[
        list[Action] | None,
        Query(max_length=32, description="one or more operations (repeat the parameter)"),
    ] = None,
    result: Annotated[
        str | None,
        Query(pattern=r"^[a-z_]{1,32}$", description="ok, match, no_match, unknown, suspended, ..."),
    ] = None,
    since: Annotated[
        UtcTime | None, Query(alias="from", description="ISO 8601, inclusive (a time without a zone is UTC)")
    ] = None,
    until: Annotated[UtcTime | None, Query(alias="to", description="ISO 8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="next_cursor of the previous page")
    ] = None,
) -> AuditPage:
    """Who did what, to whom, when and with which result, newest first. Follow ``next_cursor``
    for older rows. Rows older than FACEGATE_AUDIT_RETENTION_DAYS are purged."""
    flt = AuditFilter(person_id, key_id, tuple(dict.fromkeys(action or ())), result, since, until)
    items, next_cursor = read_page(state.sessions, flt, limit, cursor)
    return AuditPage.model_validate({"items": items, "next_cursor": next_cursor, "limit": limit})
