"""GET/DELETE /people: the gallery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from service.api.deps import AdminCaller, EnrollCaller, RecognizerDep
from service.api.problems import problem_responses
from service.api.strict_body import refuse_repeated_json_keys
from service.collection_index import NAME_PATTERN
from service.gallery.status import StatusChange
from service.recognition import person_out
from service.schemas import PERSON_ID_PATTERN, PeoplePage, PersonExport, PersonOut, PersonUpdate

router = APIRouter(prefix="/people", tags=["people"])

PersonId = Annotated[str, Path(pattern=PERSON_ID_PATTERN)]
CollectionName = Annotated[str, Path(pattern=NAME_PATTERN, description="a collection's name")]
MAX_OFFSET = 2**31 - 1  # what every database's OFFSET takes without overflow
ONE_PERSON = problem_responses(401, 403, 404, 422, 503, s404="no such person (person_not_found)")


@router.get("", response_model=PeoplePage, responses=problem_responses(401, 403, 422, 503))
def list_people(
    recognizer: RecognizerDep,
    caller: AdminCaller,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=r"^[^\x00]*$", description="name or person_id contains (no NUL)"),
    ] = None,
    collection: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="members of this collection")
    ] = None,
) -> PeoplePage:
    records, total = recognizer.gallery.page(offset, limit, q, collection)
    return PeoplePage(items=[person_out(r) for r in records], total=total, offset=offset, limit=limit)


@router.get("/{person_id}", response_model=PersonOut, responses=ONE_PERSON)
def get_person(person_id: PersonId, recognizer: RecognizerDep, caller: AdminCaller) -> PersonOut:
    return person_out(recognizer.gallery.get(person_id))


@router.get(
    "/{person_id}/crop",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **ONE_PERSON,
    },
)
def get_crop(person_id: PersonId, recognizer: RecognizerDep, caller: AdminCaller) -> Response:
    """The aligned reference crop (PNG)."""
    return Response(
        recognizer.gallery.crop(person_id),
        media_type="image/png",
        headers={"Cache-Control": "private, no-store"},
    )


@router.get("/{person_id}/export", response_model=PersonExport, responses=ONE_PERSON)
def export_person(person_id: PersonId, recognizer: RecognizerDep, caller: AdminCaller) -> dict:
    """Everything stored about the person: record, reference crop, embeddings, audit rows
    (this export's own row included)."""
    return recognizer.export(person_id, caller)


@router.patch(
    "/{person_id}",
    response_model=PersonOut,
    responses=problem_responses(
        400, 401, 403, 404, 408, 413, 422, 503, s404="no such person (person_not_found)"
    ),
)
def update_person(
    person_id: PersonId,
    body: PersonUpdate,
    recognizer: RecognizerDep,
    caller: EnrollCaller,
    _: Annotated[None, Depends(refuse_repeated_json_keys)],
) -> PersonOut:
    """Suspend or reactivate a person, or set or clear their expiry date (enroll scope). A
    suspended or expired person keeps every stored row but is never matched: /verify answers 409
    person_suspended or person_expired, /identify and the duplicate check do not see them."""
    change = StatusChange(
        status=body.status,
        expires_at=body.expires_at,
        set_expiry="expires_at" in body.model_fields_set,
    )
    return person_out(recognizer.set_status(person_id, change, caller))


@router.put(
    "/{person_id}/collections/{collection}",
    response_model=PersonOut,
    responses=problem_responses(401, 403, 404, 422, 503, s404="no such person (person_not_found)"),
)
def add_to_collection(
    person_id: PersonId, collection: CollectionName, recognizer: RecognizerDep, caller: EnrollCaller
) -> PersonOut:
    """Add the person to a collection (created if new; enroll scope; a bound key: its own)."""
    return person_out(recognizer.edit_collections(person_id, [collection], [], caller))


@router.delete(
    "/{person_id}/collections/{collection}",
    response_model=PersonOut,
    responses=problem_responses(
        401,
        403,
        404,
        409,
        422,
        503,
        s404="no such person (person_not_found)",
        s409="default is the person's only collection (last_collection)",
    ),
)
def remove_from_collection(
    person_id: PersonId, collection: CollectionName, recognizer: RecognizerDep, caller: EnrollCaller
) -> PersonOut:
    """Remove the person from a collection (enroll scope); out of every named one, they are in
    ``default``."""
    return person_out(recognizer.edit_collections(person_id, [], [collection], caller))


@router.delete("/{person_id}", status_code=204, response_class=Response, responses=ONE_PERSON)
def delete_person(person_id: PersonId, recognizer: RecognizerDep, caller: AdminCaller) -> Response:
    """Remove the person, the crop, every embedding and the index entries."""
    recognizer.delete(person_id, caller)
    return Response(status_code=204)
