"""POST /enroll, /verify, /identify."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.api.deps import EnrollCaller, RecognizerDep, StateDep, VerifyCaller
from service.api.intake import read_photo_request, read_photos_request
from service.api.problems import problem_responses
from service.api.routes.openapi import photo_body
from service.bursts import FRAME_NAMES
from service.schemas import (
    EnrollJSON,
    EnrollOptions,
    EnrollOut,
    IdentifyJSON,
    IdentifyOptions,
    IdentifyOut,
    VerifyJSON,
    VerifyOptions,
    VerifyOut,
)

router = APIRouter(tags=["recognition"])
Options = TypeVar("Options", bound=BaseModel)
PHOTO_PROBLEMS = (401, 403, 408, 413, 415, 422, 503)


@router.post(
    "/enroll",
    response_model=EnrollOut,
    status_code=201,
    openapi_extra=photo_body(EnrollJSON),
    responses=problem_responses(
        *PHOTO_PROBLEMS, 409, s409="person_id enrolled (already_enrolled) or the face is (duplicate_face)"
    ),
)
async def enroll(
    request: Request, state: StateDep, recognizer: RecognizerDep, caller: EnrollCaller
) -> EnrollOut:
    """Enrol one reference photo for a person (exactly one face unless face_selection=largest)."""
    data, opts = await read_photo_request(request, EnrollOptions, state.settings.max_upload_bytes)
    return await run_in_threadpool(recognizer.enroll, data, opts, caller)


@router.post(
    "/verify",
    response_model=VerifyOut,
    openapi_extra=photo_body(VerifyJSON, FRAME_NAMES[:1], FRAME_NAMES[1:]),
    responses=problem_responses(*PHOTO_PROBLEMS, 404, s404="no such person (person_not_found)"),
)
async def verify(
    request: Request, state: StateDep, recognizer: RecognizerDep, caller: VerifyCaller
) -> VerifyOut:
    """Is this photo the enrolled person `person_id`? A burst (`image_2` ... `image_5` beside `image`):
    the frame with the best-quality face decides."""
    frames, opts = await _frames(request, VerifyOptions, state.settings.max_upload_bytes)
    return await run_in_threadpool(recognizer.verify, frames, opts, caller)


@router.post(
    "/identify",
    response_model=IdentifyOut,
    openapi_extra=photo_body(IdentifyJSON, FRAME_NAMES[:1], FRAME_NAMES[1:]),
    responses=problem_responses(*PHOTO_PROBLEMS, 404, s404="no such collection (collection_not_found)"),
)
async def identify(
    request: Request, state: StateDep, recognizer: RecognizerDep, caller: VerifyCaller
) -> IdentifyOut:
    """Who is this, if anyone? Unknown faces are answered `unknown`, never a nearest person. A burst
    (`image_2` ... `image_5` beside `image`): the frame with the best-quality face decides."""
    frames, opts = await _frames(request, IdentifyOptions, state.settings.max_upload_bytes)
    return await run_in_threadpool(recognizer.identify, frames, opts, caller)


async def _frames(request: Request, options: type[Options], max_bytes: int) -> tuple[list[bytes], Options]:
    """The photo, or the frames of a burst in their order (image, image_2, ... image_5)."""
    photos, opts = await read_photos_request(request, options, max_bytes, FRAME_NAMES[:1], FRAME_NAMES[1:])
    return list(photos.values()), opts
