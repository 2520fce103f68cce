"""Admin: API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from service.api.deps import AdminCaller, StateDep
from service.api.problems import problem_responses
from service.api.strict_body import refuse_repeated_json_keys
from service.errors import InvalidRequest
from service.gallery import audit
from service.schemas import CreatedKeyOut, KeyCreate, KeyOut

router = APIRouter(prefix="/keys", tags=["keys"])

KeyId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the key's id (from GET /keys)")]


def key_out(record) -> dict:
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "scopes": sorted(record.scopes),
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "revoked_at": record.revoked_at,
        "collection": record.collection,
    }


@router.get("", response_model=list[KeyOut], responses=problem_responses(401, 403, 503))
def list_keys(state: StateDep, caller: AdminCaller) -> list[dict]:
    return [key_out(k) for k in state.keys.list_keys()]


@router.post(
    "",
    response_model=CreatedKeyOut,
    status_code=201,
    responses=problem_responses(400, 401, 403, 408, 413, 422, 503),
)
def create_key(
    body: KeyCreate,
    state: StateDep,
    caller: AdminCaller,
    _: Annotated[None, Depends(refuse_repeated_json_keys)],
) -> dict:
    try:
        plaintext, record = state.keys.create(
            body.name,
            set(body.scopes),
            audit.row(
                caller,
                "key_create",
                detail={"scopes": sorted(set(body.scopes)), "collection": body.collection},
            ),
            body.collection,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    return {**key_out(record), "key": plaintext}


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses=problem_responses(
        401, 403, 404, 409, 422, 503, s404="no such key", s409="the last admin key, or the caller's own"
    ),
)
def revoke_key(key_id: KeyId, state: StateDep, caller: AdminCaller) -> Response:
    state.keys.revoke(key_id, caller.key_id, audit.row(caller, "key_revoke"))
    return Response(status_code=204)
