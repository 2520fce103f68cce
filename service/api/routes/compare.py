"""POST /compare: are the faces of two photos the same person? Nobody enrolled, nothing stored."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from service.api.deps import CompareCaller, RecognizerDep, StateDep
from service.api.intake import read_photos_request
from service.api.problems import problem_responses
from service.api.routes.openapi import photo_body
from service.schemas import CompareJSON, CompareOptions, CompareOut

router = APIRouter(tags=["recognition"])
PHOTOS = ("image_a", "image_b")


@router.post(
    "/compare",
    response_model=CompareOut,
    openapi_extra=photo_body(CompareJSON, PHOTOS),
    responses=problem_responses(401, 403, 408, 413, 415, 422, 503),
)
async def compare(
    request: Request, state: StateDep, recognizer: RecognizerDep, caller: CompareCaller
) -> CompareOut:
    """Are the faces in `image_a` and `image_b` the same person? Needs the `compare` scope (or admin);
    the largest face of each unless `face_index_a`/`face_index_b` choose; audited, nothing stored."""
    photos, opts = await read_photos_request(request, CompareOptions, state.settings.max_upload_bytes, PHOTOS)
    return await run_in_threadpool(recognizer.compare, photos["image_a"], photos["image_b"], opts, caller)
